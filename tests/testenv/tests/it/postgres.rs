use coder_testenv::Postgres;

#[tokio::test]
async fn migrations_and_queries_run_against_a_real_postgres() {
    let postgres = Postgres::start().await.expect("start PostgreSQL");
    let url = postgres.create_database("smoke").await.expect("create database");
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");

    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await
        .expect("version");
    assert!(
        version.starts_with("15."),
        "expected PostgreSQL 15, got {version}"
    );

    let migrator = sqlx::migrate!("tests/it/migrations");
    migrator.run(&pool).await.expect("first migration run");
    migrator.run(&pool).await.expect("a second run is a no-op");
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&pool)
        .await
        .expect("ledger");
    assert_eq!(applied, vec![1]);

    // A value full of SQL-significant characters survives a bound parameter unchanged.
    let body = "it's; DROP TABLE smoke_notes; --";
    let id: i64 = sqlx::query_scalar("INSERT INTO smoke_notes (body) VALUES ($1) RETURNING id")
        .bind(body)
        .fetch_one(&pool)
        .await
        .expect("insert");
    let read_back: String = sqlx::query_scalar("SELECT body FROM smoke_notes WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("select");
    assert_eq!(read_back, body);
}

#[tokio::test]
async fn the_server_refuses_a_wrong_password() {
    let postgres = Postgres::start().await.expect("start PostgreSQL");
    let wrong = postgres.url().replace(postgres.password(), "not-the-password");
    let error = sqlx::PgPool::connect(&wrong)
        .await
        .expect_err("a wrong password must be refused");
    assert!(
        error.to_string().contains("password authentication failed"),
        "unexpected error: {error}"
    );
}

#[tokio::test]
async fn create_database_refuses_names_that_are_not_plain_identifiers() {
    let postgres = Postgres::start().await.expect("start PostgreSQL");
    let error = postgres
        .create_database("x\"; DROP")
        .await
        .expect_err("must refuse");
    assert!(
        matches!(error, coder_testenv::Error::InvalidArgument(_)),
        "unexpected error: {error}"
    );
}
