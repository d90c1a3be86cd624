//! What the runner reads from a child: each stream's bounded tail, both streams interleaved, a
//! copy in a log file, and complete lines handed to a sink as they are printed.
//!
//! Not here: starting or stopping the child ([super]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;

use super::{lock, LineSink, Stream};

/// Keeps the last bytes written to it.
#[derive(Debug, Default)]
pub(super) struct Tail {
    bytes: VecDeque<u8>,
    limit: usize,
    pub(super) dropped: usize,
}

impl Tail {
    pub(super) fn new(limit: usize) -> Tail {
        Tail {
            bytes: VecDeque::new(),
            limit,
            dropped: 0,
        }
    }

    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend(chunk);
        if self.bytes.len() > self.limit {
            let cut = self.bytes.len() - self.limit;
            self.bytes.drain(..cut);
            self.dropped += cut;
        }
    }

    pub(super) fn text(&self) -> String {
        let (front, back) = self.bytes.as_slices();
        let mut bytes = Vec::with_capacity(self.bytes.len());
        bytes.extend_from_slice(front);
        bytes.extend_from_slice(back);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// What the readers of a process collect.
pub(super) struct Collected {
    pub(super) stdout: Tail,
    pub(super) stderr: Tail,
    pub(super) combined: Tail,
    pub(super) log: Option<std::fs::File>,
}

pub(super) async fn read_stream(
    stream: Stream,
    mut reader: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    collected: Arc<Mutex<Collected>>,
    lines: Option<LineSink>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        {
            let mut collected = lock(&collected);
            match stream {
                Stream::Stdout => collected.stdout.push(chunk),
                Stream::Stderr => collected.stderr.push(chunk),
            }
            collected.combined.push(chunk);
            if let Some(file) = collected.log.as_mut() {
                use std::io::Write;
                let _ = file.write_all(chunk);
            }
        }
        if let Some(sink) = &lines {
            partial.extend_from_slice(chunk);
            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                sink(stream, text.trim_end_matches(['\n', '\r']));
            }
        }
    }
    if let (Some(sink), false) = (&lines, partial.is_empty()) {
        sink(stream, String::from_utf8_lossy(&partial).trim_end());
    }
}
