//! The apply lock (a Lease) against a real API server: renewals are fenced by resourceVersion,
//! a run whose lease was taken over stops, and release never deletes someone else's lease.

use std::time::Duration;

use coder_deploy::lease::{self, LEASE_NAME, LeaseError};
use coder_testenv::KubeApiServer;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};

async fn namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");
}

fn holder(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|spec| spec.holder_identity.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_taken_over_lease_stops_the_run_and_is_not_released_by_it() {
    let server = KubeApiServer::start().await.expect("API server");
    let client = server.client().await.expect("client");
    namespace(&client, "fenced").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "fenced");

    let mut held = lease::acquire_renewing_every(client.clone(), "fenced", Duration::from_millis(500))
        .await
        .expect("acquire");
    let first = leases.get(LEASE_NAME).await.expect("lease");
    let ours = holder(&first);

    // Renewals move the lease forward while the run holds it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let renewed = leases.get(LEASE_NAME).await.expect("lease");
    assert_ne!(
        renewed.metadata.resource_version, first.metadata.resource_version,
        "the lease is renewed"
    );
    assert_eq!(holder(&renewed), ours);

    // Another writer takes the lease over (as a second run would after a stall); its own write
    // is fenced too, so it retries when a renewal slips in between its read and its write.
    let mut attempts = 0;
    loop {
        let mut taken = leases.get(LEASE_NAME).await.expect("lease");
        if let Some(spec) = taken.spec.as_mut() {
            spec.holder_identity = Some("another coder-install".to_owned());
        }
        match leases.replace(LEASE_NAME, &PostParams::default(), &taken).await {
            Ok(_) => break,
            Err(kube::Error::Api(status)) if status.code == 409 && attempts < 20 => attempts += 1,
            Err(error) => panic!("take over: {error}"),
        }
    }

    // The run notices at its next renewal and stops: work still running is cut off.
    let stopped = tokio::time::timeout(
        Duration::from_secs(10),
        held.run_while_held(
            std::future::pending::<Result<(), LeaseError>>(),
            &coder_progress::Silent,
        ),
    )
    .await
    .expect("the run stops within a few renewals");
    let error = stopped.expect_err("the loss is the error");
    assert!(matches!(error, LeaseError::Lost { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("another coder-install"), "{text}");

    // Its renewals stopped: the new holder's lease is left as it was written.
    let after = leases.get(LEASE_NAME).await.expect("lease");
    assert_eq!(holder(&after), "another coder-install");

    // Releasing deletes nothing that belongs to someone else.
    held.release(&coder_progress::Silent).await;
    let kept = leases.get_opt(LEASE_NAME).await.expect("get");
    assert_eq!(
        kept.as_ref().map(holder).as_deref(),
        Some("another coder-install"),
        "release must not delete a lease another run holds"
    );
}

#[tokio::test]
async fn a_held_lease_is_released_and_a_second_run_is_refused_meanwhile() {
    let server = KubeApiServer::start().await.expect("API server");
    let client = server.client().await.expect("client");
    namespace(&client, "released").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "released");

    let mut held = lease::acquire_renewing_every(client.clone(), "released", Duration::from_millis(300))
        .await
        .expect("acquire");
    let refused = lease::acquire(client.clone(), "released")
        .await
        .err()
        .expect("a second run is refused");
    assert!(matches!(refused, LeaseError::Held { .. }), "{refused}");

    // Work finishes normally while renewals go on, then the lease is released.
    let value = held
        .run_while_held(
            async {
                tokio::time::sleep(Duration::from_millis(1000)).await;
                Ok::<_, LeaseError>(7)
            },
            &coder_progress::Silent,
        )
        .await
        .expect("work under a held lease");
    assert_eq!(value, 7);
    held.release(&coder_progress::Silent).await;
    assert!(
        leases.get_opt(LEASE_NAME).await.expect("get").is_none(),
        "the holder's release deletes the lease"
    );
}
