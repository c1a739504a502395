//! The listen addresses file (`--listen-addresses-file`, hidden): the addresses a member's
//! listeners actually bound, for a harness that started it on port 0 and must learn the ports
//! without choosing them itself (choosing a free port and passing it on is a race: another
//! process can bind it in between).
//!
//! One line per listener, `client <ip:port>` or `peer <ip:port>`, client listeners first, in
//! the order of the listen URLs. The file appears whole or not at all: it is written to a
//! temporary file beside it and renamed over it, so a harness polling for it never reads half.
//! It is rewritten at every start (a restarted port-0 member has new ports). It holds no
//! secret and is never read by the member.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;

/// The two kinds of listener a member has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Client,
    Peer,
}

impl Listener {
    fn word(self) -> &'static str {
        match self {
            Listener::Client => "client",
            Listener::Peer => "peer",
        }
    }
}

/// Writes `path` atomically: the whole text to `<path>.tmp`, fsynced, then renamed over `path`.
pub fn write(path: &Path, client: &[SocketAddr], peer: &[SocketAddr]) -> io::Result<()> {
    let text = render(client, peer);
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(".tmp");
    let temp = Path::new(&temp_name);
    let mut file = std::fs::File::create(temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(temp, path)
}

fn render(client: &[SocketAddr], peer: &[SocketAddr]) -> String {
    let lines =
        client.iter().map(|addr| (Listener::Client, addr)).chain(peer.iter().map(|addr| (Listener::Peer, addr)));
    lines.map(|(kind, addr)| format!("{} {addr}\n", kind.word())).collect()
}

/// The addresses in a listen addresses file's text, in order; `None` if any line is not one
/// this module writes.
pub fn parse(text: &str) -> Option<Vec<(Listener, SocketAddr)>> {
    text.lines()
        .map(|line| {
            let (word, addr) = line.split_once(' ')?;
            let kind = match word {
                "client" => Listener::Client,
                "peer" => Listener::Peer,
                _ => return None,
            };
            Some((kind, addr.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_addresses_read_back_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("addresses");
        let client: Vec<SocketAddr> =
            vec!["127.0.0.1:40001".parse().expect("an address"), "[::1]:40003".parse().expect("an address")];
        let peer: Vec<SocketAddr> = vec!["127.0.0.1:40002".parse().expect("an address")];
        write(&path, &client, &peer).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "client 127.0.0.1:40001\nclient [::1]:40003\npeer 127.0.0.1:40002\n");
        assert_eq!(
            parse(&text),
            Some(vec![(Listener::Client, client[0]), (Listener::Client, client[1]), (Listener::Peer, peer[0])])
        );
        assert!(!dir.path().join("addresses.tmp").exists(), "the temporary file is renamed away");
    }

    #[test]
    fn anything_else_does_not_parse() {
        for text in ["server 127.0.0.1:1\n", "client 127.0.0.1\n", "client\n", "peer  127.0.0.1:1\n"] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
