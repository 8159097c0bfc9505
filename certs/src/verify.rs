//! `exchange-certs verify FILE --ca CA.pem`: checks an evidence bundle offline, with nothing but
//! the exchange CA's certificate, and prints each proven step with who signed it and when.
//!
//! The checks are `exchange_core::bundle::verify_bundle` (described step by step in
//! `docs/evidence.md`); this file reads the two files and renders the report. No hub, node or
//! network is involved, so a bundle can be checked anywhere, years later.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use exchange_core::{
    bundle::{Report, Step, verify_bundle, verify_bundle_in},
    document::RecipientRole,
    identity::exchange_of_ca,
    signing::{Trust, Verifier, digest_label},
    time::format_ms,
    tls::read_pem_file,
};

/// Verifies the bundle `file` against the CA certificates `cas` (PEM) and returns the report as
/// text; an error names the failing item.
///
/// With one CA, every signature must chain to it. With several (a document that crossed
/// linked exchanges, docs/federation.md), each CA must name its exchange
/// (`urn:exchange:name:`); the sender's exchange is the one whose CA verifies the header, and
/// every other signature is checked against the CA of the exchange its signer belongs to.
pub fn verify_file(file: &Path, cas: &[PathBuf]) -> Result<String> {
    let mut named = Vec::with_capacity(cas.len());
    for ca in cas {
        let der = read_pem_file(ca, "CERTIFICATE")
            .with_context(|| format!("reading {}", ca.display()))?;
        let verifier = Verifier::new(&der).with_context(|| format!("using {}", ca.display()))?;
        named.push((ca, exchange_of_ca(&der), verifier, der));
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if let [(ca, _, verifier, _)] = named.as_slice() {
        let report = verify_bundle(&bytes, verifier)
            .with_context(|| format!("{} does not verify", file.display()))?;
        return Ok(render(&report, &ca.display().to_string()));
    }
    let mut exchanges = Vec::with_capacity(named.len());
    for (ca, name, _, _) in &named {
        let name = name.clone().with_context(|| {
            format!(
                "{} names no exchange (urn:exchange:name:): with several --ca each must name its exchange",
                ca.display()
            )
        })?;
        anyhow::ensure!(
            !exchanges.contains(&name),
            "two --ca certificates name exchange {name}"
        );
        exchanges.push(name);
    }
    // The sender's exchange: the CA its header signature verifies with.
    let mut first_error = None;
    for (i, (_, _, verifier, _)) in named.iter().enumerate() {
        let trust = Trust::new(verifier.clone(), Some(exchanges[i].clone()));
        for (j, (_, _, _, der)) in named.iter().enumerate() {
            if j != i {
                trust.link(exchanges[j].clone(), der)?;
            }
        }
        match verify_bundle_in(&bytes, &trust) {
            Ok(report) => {
                let shown: Vec<String> = named
                    .iter()
                    .zip(&exchanges)
                    .map(|((p, _, _, _), e)| format!("{} ({e})", p.display()))
                    .collect();
                return Ok(render(&report, &shown.join(", ")));
            }
            Err(e) => {
                let about_sender = matches!(
                    &e,
                    exchange_core::bundle::BundleError::Item {
                        item: exchange_core::bundle::Item::Document,
                        ..
                    }
                );
                if first_error.is_none() || !about_sender {
                    first_error = Some((about_sender, e));
                }
            }
        }
    }
    let e = first_error.map(|(_, e)| e);
    Err(anyhow::anyhow!(
        "{}",
        e.map_or_else(|| "no CA given".to_owned(), |e| e.to_string())
    ))
    .with_context(|| format!("{} does not verify", file.display()))
}

/// The document, a table of steps, the content's verdict, and what "verified" means.
fn render(r: &Report, ca: &str) -> String {
    let recipients: Vec<String> = r
        .recipients
        .iter()
        .map(|x| match x.role {
            RecipientRole::Main => format!("{} (主送)", x.addr),
            RecipientRole::Cc => format!("{} (抄送)", x.addr),
        })
        .collect();
    let mut out = String::new();
    let mut line = |k: &str, v: &str| {
        if !v.is_empty() {
            out.push_str(&format!("{k:<11} {}\n", one_line(v)));
        }
    };
    line("document", &r.doc_id.to_string());
    line("title", &r.title);
    line("number", &r.doc_number);
    line("sender", r.sender.as_str());
    line("recipients", &recipients.join(", "));
    line("header", &format!("{} {}", r.digest, r.header_digest));
    out.push('\n');
    // Columns as wide as their longest entry (a signer of a linked exchange reads "department
    // office of exchange province").
    let widths = (
        r.steps
            .iter()
            .map(|s| recipient_of(s).chars().count())
            .fold(12, usize::max),
        r.steps
            .iter()
            .map(|s| s.signer.to_string().chars().count())
            .fold(18, usize::max),
    );
    out.push_str(&format!(
        "{:<14} {:<rw$} {:<sw$} {:<25} DETAILS\n",
        "STEP",
        "RECIPIENT",
        "SIGNED BY",
        "AT (UTC)",
        rw = widths.0,
        sw = widths.1
    ));
    for s in &r.steps {
        out.push_str(&step_line(s, widths));
    }
    out.push('\n');
    let content = if r.content_verified {
        format!(
            "{} part(s) included; each matches the signed size and {}",
            r.parts.len(),
            digest_label(r.digest)
        )
    } else {
        format!(
            "not included (the signed manifest fixes each part's size and {})",
            digest_label(r.digest)
        )
    };
    out.push_str(&format!("{:<11} {content}\n", "content"));
    out.push_str(&format!(
        "{:<11} {} signatures, each by the principal shown, with a certificate from {} valid at the time shown\n",
        "verified",
        r.steps.len(),
        ca
    ));
    out
}

fn recipient_of(s: &Step) -> String {
    s.recipient
        .as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

fn step_line(s: &Step, (rw, sw): (usize, usize)) -> String {
    let recipient = recipient_of(s);
    let mut details = Vec::new();
    if !s.clerk.is_empty() {
        details.push(format!("clerk {}", one_line(&s.clerk)));
    }
    if !s.reason.is_empty() {
        details.push(format!("reason: {}", one_line(&s.reason)));
    }
    let line = format!(
        "{:<14} {:<rw$} {:<sw$} {:<25} {}",
        s.kind.name(),
        recipient,
        s.signer.to_string(),
        format_ms(s.at_ms),
        details.join(", ")
    );
    format!("{}\n", line.trim_end())
}

/// Signed text may hold newlines and tabs; one step stays on one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\t'], " ")
}

/// Verifies an audit export (`exchange-hub audit export` output, JSON Lines) against the CA
/// certificate `ca`: the entries form an unbroken hash chain and every checkpoint is signed by the
/// hub and matches it. Returns a one-line summary; an error names the first bad entry.
pub fn verify_audit_file(file: &Path, ca: &Path) -> Result<String> {
    let ca_der =
        read_pem_file(ca, "CERTIFICATE").with_context(|| format!("reading {}", ca.display()))?;
    let verifier = Verifier::new(&ca_der).with_context(|| format!("using {}", ca.display()))?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut lines = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let parsed: exchange_core::audit::ExportLine =
            serde_json::from_str(line).with_context(|| {
                format!(
                    "{} line {}: not an audit export line",
                    file.display(),
                    n + 1
                )
            })?;
        lines.push(parsed);
    }
    let (entries, checkpoints) = exchange_core::audit::verify_export(&lines, &verifier)
        .with_context(|| format!("{} does not verify", file.display()))?;
    Ok(format!(
        "{}: {entries} entries form an unbroken chain; {checkpoints} checkpoints signed by the hub (CA {}) match it\n",
        file.display(),
        ca.display()
    ))
}

#[cfg(test)]
mod tests {
    use exchange_core::{
        bundle::StepKind, document::EvidenceKind, identity::Principal, signing::Digest,
    };

    use super::*;

    #[test]
    fn each_step_is_one_line_with_signer_time_and_details() -> Result<()> {
        let report = Report {
            doc_id: "0192f0c1-7a4e-7cc1-9d36-1b2f1e0c5a77".parse()?,
            title: "关于做好年终工作的通知".into(),
            doc_number: String::new(),
            sender: "a".parse()?,
            header_digest: Digest::of(b"header"),
            digest: exchange_core::crypto::DigestAlgorithm::Sha256,
            recipients: Vec::new(),
            parts: Vec::new(),
            steps: vec![Step {
                kind: StepKind::Evidence(EvidenceKind::Rejected),
                recipient: Some("c".parse()?),
                signer: exchange_core::identity::Qualified::local(Principal::Dept("c".parse()?)),
                at_ms: 1_764_167_230_123,
                clerk: "李四".into(),
                reason: "不属于\n本单位".into(),
            }],
            content_verified: false,
        };
        let text = render(&report, "ca.pem");
        let step = text
            .lines()
            .find(|l| l.starts_with("rejected"))
            .context("no step line")?;
        assert!(step.contains("department c"), "{step}");
        assert!(step.contains("2025-11-26T14:27:10.123Z"), "{step}");
        assert!(
            step.ends_with("clerk 李四, reason: 不属于 本单位"),
            "{step}"
        );
        assert!(
            text.contains("title       关于做好年终工作的通知"),
            "{text}"
        );
        assert!(
            !text.contains("number"),
            "empty fields are left out: {text}"
        );
        Ok(())
    }
}
