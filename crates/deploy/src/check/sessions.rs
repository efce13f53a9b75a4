//! The workspace's WebSocket sessions through the envproxy: a terminal round trip (the envagent
//! shell) and bytes through the SSH proxy.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::front_door::Socket;

/// How long the workspace may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Reads messages until `done` says the bytes so far are enough; the bytes.
async fn read_until(socket: &mut Socket, done: impl Fn(&[u8]) -> bool) -> Result<Vec<u8>, String> {
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
    while !done(&received) {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .map_err(|_| {
                format!(
                    "no answer in {} s; received so far: {:?}",
                    ANSWER_TIMEOUT.as_secs(),
                    String::from_utf8_lossy(&received)
                )
            })?
            .ok_or_else(|| "the session closed".to_owned())?
            .map_err(|error| format!("the session failed: {error}"))?;
        match message {
            Message::Close(frame) => {
                return Err(format!(
                    "the session was closed{}",
                    frame
                        .map(|frame| format!(": {} {}", frame.code, frame.reason))
                        .unwrap_or_default()
                ));
            }
            other => received.extend_from_slice(&other.into_data()),
        }
    }
    Ok(received)
}

/// The command typed into the terminal and the line its output must hold: the shell computes
/// part of it, so the terminal echoing what was typed does not count.
pub fn terminal_exchange(word: &str) -> (String, String) {
    (format!("echo {word}-$((6*7))\n"), format!("{word}-42"))
}

/// Types a command into the terminal and waits for the shell's answer.
pub async fn terminal_round_trip(socket: &mut Socket, word: &str) -> Result<String, String> {
    let (command, expected) = terminal_exchange(word);
    socket
        .send(Message::binary(command.into_bytes()))
        .await
        .map_err(|error| format!("sending to the terminal: {error}"))?;
    read_until(socket, |bytes| String::from_utf8_lossy(bytes).contains(&expected)).await?;
    let _ = socket.close(None).await;
    Ok(format!("the shell answered {expected}"))
}

/// Sends an SSH identification line through the SSH proxy and waits for an SSH identification
/// line back (the workspace's SSH server's own).
pub async fn ssh_bytes(socket: &mut Socket) -> Result<String, String> {
    socket
        .send(Message::binary(b"SSH-2.0-coder-install-check\r\n".to_vec()))
        .await
        .map_err(|error| format!("sending to the SSH proxy: {error}"))?;
    let received = read_until(socket, |bytes| {
        bytes.starts_with(b"SSH-") && bytes.contains(&b'\n')
    })
    .await?;
    let _ = socket.close(None).await;
    let line = String::from_utf8_lossy(&received);
    Ok(format!(
        "the SSH proxy answered {:?}",
        line.lines().next().unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_command_does_not_hold_the_expected_answer() {
        let (command, expected) = terminal_exchange("coder-check-ab12");
        assert!(!command.contains(&expected), "{command}");
        assert_eq!(expected, "coder-check-ab12-42");
    }
}
