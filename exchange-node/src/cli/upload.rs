//! Streaming a submission's files from disk to the node, a chunk at a time.
//!
//! A reader task feeds a small channel that becomes the request stream, so memory stays flat
//! whatever the size of the files, and the channel's backpressure paces the reads to what the
//! node accepts. Each part must be exactly as long as the manifest declared: if a file shrinks,
//! grows or fails while it is read, the reader aborts the submission explicitly, so the node
//! never seals a document whose content differs from the files.

use std::{
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
};

use anyhow::Context as _;
use exchange_core::blob::CHUNK_SIZE;
use exchange_proto::v1::{self as pb, submit_document_request::Msg};
use tokio::{
    fs::File,
    io::{AsyncRead, AsyncReadExt},
    sync::mpsc,
    task::JoinHandle,
};

/// Files above this size get a progress line (when stderr is a terminal).
const PROGRESS_ABOVE: u64 = 8 * 1024 * 1024;

/// Chunks in flight between the reader and the gRPC stream.
const IN_FLIGHT: usize = 4;

/// One file to send, with the manifest entry that describes it.
#[derive(Debug, Clone)]
pub(crate) struct LocalPart {
    /// Where the content is read from.
    pub(crate) path: PathBuf,
    /// Role, name, media type and exact size, as declared to the node.
    pub(crate) spec: pb::PartSpec,
}

/// Starts the reader: the returned channel yields the draft, then every part's chunks in order.
/// The task ends with `Ok` when everything was handed over or the node stopped reading, and with
/// the local error (naming the file) if a file could not be read as declared.
pub(crate) fn start(
    draft: pb::DocumentDraft,
    parts: Vec<LocalPart>,
) -> (
    mpsc::Receiver<pb::SubmitDocumentRequest>,
    JoinHandle<anyhow::Result<()>>,
) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let task = tokio::spawn(async move { feed(tx, draft, parts).await });
    (rx, task)
}

/// The reader task's body.
async fn feed(
    tx: mpsc::Sender<pb::SubmitDocumentRequest>,
    draft: pb::DocumentDraft,
    parts: Vec<LocalPart>,
) -> anyhow::Result<()> {
    if tx
        .send(pb::SubmitDocumentRequest {
            msg: Some(Msg::Draft(draft)),
        })
        .await
        .is_err()
    {
        return Ok(());
    }
    let result = send_parts(&tx, &parts).await;
    if result.is_err() {
        // Never let the stream end cleanly after a local failure: the node might take what was
        // sent as a complete document. A second draft is always refused (the protocol allows
        // one, first), so it serves as an explicit abort whatever the node has read so far.
        let abort = pb::SubmitDocumentRequest {
            msg: Some(Msg::Draft(pb::DocumentDraft::default())),
        };
        let _ = tx.send(abort).await;
    }
    result
}

/// Sends every part's content. A failed `send` means the node answered early (a refusal, or
/// an idempotent retry it already has): not a local error, so it ends the loop with `Ok`.
async fn send_parts(
    tx: &mpsc::Sender<pb::SubmitDocumentRequest>,
    parts: &[LocalPart],
) -> anyhow::Result<()> {
    for (i, part) in parts.iter().enumerate() {
        let index = u32::try_from(i).context("too many parts")?;
        let path = part.path.display();
        let mut file = File::open(&part.path)
            .await
            .with_context(|| format!("opening {path}"))?;
        let size = part.spec.size;
        let mut progress = Progress::new(&part.spec.name, size);
        let mut sent = 0u64;
        while sent < size {
            let want = usize::try_from(size - sent)
                .unwrap_or(CHUNK_SIZE)
                .min(CHUNK_SIZE);
            let mut buf = vec![0u8; want];
            let n = fill(&mut file, &mut buf)
                .await
                .with_context(|| format!("reading {path}"))?;
            if n < want {
                let got = sent + n as u64;
                anyhow::bail!(
                    "{path} shrank while it was being sent ({got} of {size} bytes); the node did not take it"
                );
            }
            let chunk = pb::PartChunk {
                part: index,
                data: buf,
            };
            if tx
                .send(pb::SubmitDocumentRequest {
                    msg: Some(Msg::Chunk(chunk)),
                })
                .await
                .is_err()
            {
                return Ok(());
            }
            sent += n as u64;
            progress.update(sent);
        }
        progress.done();
        let mut probe = [0u8; 1];
        if file
            .read(&mut probe)
            .await
            .with_context(|| format!("reading {path}"))?
            != 0
        {
            anyhow::bail!("{path} grew while it was being sent; the node did not take it");
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
async fn fill(r: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// A progress line on stderr for a large file, redrawn in place; silent when stderr is not a
/// terminal (logs and scripts get no carriage returns).
pub(crate) struct Progress<'a> {
    verb: &'static str,
    name: &'a str,
    total: u64,
    shown_percent: Option<u64>,
    enabled: bool,
}

impl<'a> Progress<'a> {
    pub(crate) fn new(name: &'a str, total: u64) -> Self {
        Self::with_verb("sending", name, total)
    }

    /// A progress line that says `verb` ("sending", "saving").
    pub(crate) fn with_verb(verb: &'static str, name: &'a str, total: u64) -> Self {
        let enabled = total > PROGRESS_ABOVE && std::io::stderr().is_terminal();
        Progress {
            verb,
            name,
            total,
            shown_percent: None,
            enabled,
        }
    }

    pub(crate) fn update(&mut self, sent: u64) {
        if !self.enabled {
            return;
        }
        let percent = sent.saturating_mul(100) / self.total.max(1);
        if self.shown_percent != Some(percent) {
            self.shown_percent = Some(percent);
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r{} {}: {:.1} / {:.1} MiB ({percent}%)",
                self.verb,
                self.name,
                mib(sent),
                mib(self.total)
            );
            let _ = err.flush();
        }
    }

    pub(crate) fn done(&mut self) {
        if self.enabled && self.shown_percent.is_some() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(path: PathBuf, size: u64) -> LocalPart {
        let spec = pb::PartSpec {
            role: pb::PartRole::Body.into(),
            name: "x".into(),
            media_type: "text/plain".into(),
            size,
        };
        LocalPart { path, spec }
    }

    async fn collect(
        parts: Vec<LocalPart>,
    ) -> (Vec<pb::SubmitDocumentRequest>, anyhow::Result<()>) {
        let (mut rx, task) = start(pb::DocumentDraft::default(), parts);
        let mut msgs = Vec::new();
        while let Some(m) = rx.recv().await {
            msgs.push(m);
        }
        (msgs, task.await.unwrap())
    }

    #[tokio::test]
    async fn files_go_out_in_chunks_after_the_draft() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        let empty = dir.path().join("empty");
        std::fs::write(&big, vec![7u8; CHUNK_SIZE + 10]).unwrap();
        std::fs::write(&empty, b"").unwrap();
        let (msgs, res) = collect(vec![part(big, CHUNK_SIZE as u64 + 10), part(empty, 0)]).await;
        res.unwrap();
        assert!(matches!(msgs[0].msg, Some(Msg::Draft(_))));
        let sizes: Vec<(u32, usize)> = msgs[1..]
            .iter()
            .map(|m| match &m.msg {
                Some(Msg::Chunk(c)) => (c.part, c.data.len()),
                _ => panic!("expected a chunk"),
            })
            .collect();
        assert_eq!(sizes, vec![(0, CHUNK_SIZE), (0, 10)]);
    }

    #[tokio::test]
    async fn a_file_that_changed_size_is_not_sent_whole() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("changed.txt");
        std::fs::write(&f, b"hello world").unwrap();
        let aborted = |msgs: &[pb::SubmitDocumentRequest]| {
            matches!(
                msgs.last(),
                Some(pb::SubmitDocumentRequest {
                    msg: Some(Msg::Draft(_))
                })
            ) && msgs.len() > 1
        };
        let (msgs, res) = collect(vec![part(f.clone(), 5)]).await;
        assert!(res.unwrap_err().to_string().contains("grew"));
        assert!(aborted(&msgs), "the stream ends with an abort");
        let (msgs, res) = collect(vec![part(f.clone(), 50)]).await;
        assert!(res.unwrap_err().to_string().contains("shrank"));
        assert!(aborted(&msgs));
        let (msgs, res) = collect(vec![part(f, 0)]).await;
        assert!(res.unwrap_err().to_string().contains("grew"));
        assert!(aborted(&msgs), "an empty part that grew is aborted too");
    }
}
