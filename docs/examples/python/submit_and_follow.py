#!/usr/bin/env python3
"""Submit an official document to a department's exchange node and follow it.

An example for OA developers (docs/integration.md): it talks to the node's local gRPC API
(exchange.v1.Node) exactly as a department system would.

1. Generates the Python stubs from proto/ at run time with grpcio-tools (nothing generated is
   kept in the repository), into a temporary directory.
2. Submits the document: a DocumentDraft (metadata, part specs, idempotency key), then the
   bytes of each part in 256 KiB chunks. The node answers with the document id once the
   document is signed and durable. Retrying with the same idempotency key after a timeout
   returns the same id and never sends the document twice.
3. Follows it with WatchEvents from the last event seq this system processed (kept in
   --state-file, so a restart resumes where it stopped instead of replaying everything), until
   every recipient has reached --until (delivered, confirmed, ...) or an ending state.
4. Prints the final GetStatus as JSON on stdout.

    python3 submit_and_follow.py --node 127.0.0.1:7101 --to finance --title "关于…的通知" \
        --file 正文.ofd [--file 附件.pdf] [--urgency urgent] [--until confirmed]

Exit status: 0 when every recipient reached --until; 1 when one ended otherwise (rejected,
not delivered, refused by the hub) or on timeout; 2 on bad arguments or an RPC error.
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time
import uuid

CHUNK = 256 * 1024
HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_PROTO = HERE.parents[2] / "proto"

# How far along a recipient is; the endings that are not success rank last.
ORDER = ["QUEUED", "ACCEPTED", "DELIVERED", "CONFIRMED"]
BAD_ENDINGS = {"REJECTED", "NOT_DELIVERED", "REFUSED"}


def generate_stubs(proto_root: pathlib.Path, out: pathlib.Path):
    """Compiles exchange/v1/*.proto into `out` and imports the Node API modules."""
    from grpc_tools import protoc

    files = sorted(str(p.relative_to(proto_root)) for p in (proto_root / "exchange" / "v1").glob("*.proto"))
    args = ["protoc", f"-I{proto_root}", f"--python_out={out}", f"--grpc_python_out={out}", *files]
    if protoc.main(args) != 0:
        sys.exit(f"error: protoc failed on {proto_root}")
    sys.path.insert(0, str(out))
    from exchange.v1 import document_pb2, node_pb2, node_pb2_grpc  # noqa: E402

    return document_pb2, node_pb2, node_pb2_grpc


def requests(pb, doc, args, paths):
    """The Submit stream: the draft first, then every part's bytes in order."""
    metadata = doc.DocumentMetadata(
        title=args.title,
        doc_type=doc.DOCUMENT_TYPE_NOTICE,
        urgency=doc.Urgency.Value("URGENCY_" + args.urgency.upper().replace("-", "_")),
        to_depts=args.to,
        cc_depts=args.cc,
        doc_number=args.number,
    )
    parts = [
        pb.PartSpec(
            role=doc.PART_ROLE_BODY if i == 0 else doc.PART_ROLE_ATTACHMENT,
            name=p.name,
            media_type="application/octet-stream",
            size=p.stat().st_size,
        )
        for i, p in enumerate(paths)
    ]
    yield pb.SubmitDocumentRequest(
        draft=pb.DocumentDraft(idempotency_key=args.idempotency_key, metadata=metadata, parts=parts)
    )
    for i, p in enumerate(paths):
        with open(p, "rb") as f:
            while chunk := f.read(CHUNK):
                yield pb.SubmitDocumentRequest(chunk=pb.PartChunk(part=i, data=chunk))


def load_seq(path):
    try:
        return int(pathlib.Path(path).read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def save_seq(path, seq):
    """Records the last processed event seq atomically, so a restart resumes after it."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{seq}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def status_json(pb, status):
    name = lambda enum, v: enum.Name(v).split("_", 2)[-1]  # noqa: E731
    return {
        "doc_id": status.doc_id,
        "title": status.title,
        "refused": status.refused,
        "recipients": [
            {
                "dept": r.dept,
                "role": pb.RecipientRole.Name(r.role).removeprefix("RECIPIENT_ROLE_").lower(),
                "state": pb.RecipientState.Name(r.state).removeprefix("RECIPIENT_STATE_").lower(),
                "clerk": r.clerk,
                "reason": r.reason,
            }
            for r in status.recipients
        ],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", required=True, help="the node's API address, e.g. 127.0.0.1:7101")
    ap.add_argument("--to", required=True, type=lambda s: [d.strip() for d in s.split(",") if d.strip()],
                    help="主送 department ids, comma-separated")
    ap.add_argument("--cc", default=[], type=lambda s: [d.strip() for d in s.split(",") if d.strip()],
                    help="抄送 department ids, comma-separated")
    ap.add_argument("--title", required=True)
    ap.add_argument("--number", default="", help="发文字号, e.g. 明政〔2026〕12号")
    ap.add_argument("--file", action="append", required=True, help="the body first, then attachments")
    ap.add_argument("--urgency", default="normal", choices=["normal", "urgent", "very-urgent"])
    ap.add_argument("--idempotency-key", default=None, help="default: a new UUID (store it to retry safely)")
    ap.add_argument("--until", default="delivered", choices=["accepted", "delivered", "confirmed"])
    ap.add_argument("--state-file", default=None,
                    help="where the last processed event seq is kept (default: replay from 0)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to follow before giving up")
    ap.add_argument("--proto", default=str(DEFAULT_PROTO), help="the proto/ directory of the exchange")
    args = ap.parse_args()
    args.idempotency_key = args.idempotency_key or str(uuid.uuid4())
    paths = [pathlib.Path(f) for f in args.file]

    import grpc

    with tempfile.TemporaryDirectory(prefix="exchange-stubs-") as out:
        doc, pb, rpc = generate_stubs(pathlib.Path(args.proto), pathlib.Path(out))
        with grpc.insecure_channel(args.node) as channel:  # the API is loopback-only plaintext
            node = rpc.NodeStub(channel)
            try:
                return follow(args, doc, pb, node, paths)
            except grpc.RpcError as e:
                print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
                return 2


def follow(args, doc, pb, node, paths):
    import grpc

    doc_id = node.Submit(requests(pb, doc, args, paths), timeout=60).doc_id
    print(f"submitted {doc_id}", file=sys.stderr)
    state_file = args.state_file  # None: replay from the beginning and remember nothing
    target = ORDER.index(args.until.upper())
    reached, ended = {}, {}
    deadline = time.monotonic() + args.timeout
    after = load_seq(state_file) if state_file else 0
    stream = node.WatchEvents(pb.WatchEventsRequest(after_seq=after),
                              timeout=max(1.0, deadline - time.monotonic()))
    try:
        for ev in stream:
            if ev.doc_id == doc_id and ev.kind == pb.NODE_EVENT_KIND_RECIPIENT:
                state = pb.RecipientState.Name(ev.state).removeprefix("RECIPIENT_STATE_")
                print(f"event {ev.seq}: {ev.dept or '(all)'} {state.lower()}", file=sys.stderr)
                if state in BAD_ENDINGS:
                    ended[ev.dept] = state
                elif state in ORDER:
                    reached[ev.dept] = max(reached.get(ev.dept, 0), ORDER.index(state))
            if state_file:
                save_seq(state_file, ev.seq)
            everyone = args.to + args.cc
            if ended or all(reached.get(d, -1) >= target for d in everyone):
                break
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
        print(f"error: not every recipient was {args.until} within {args.timeout} s", file=sys.stderr)
    finally:
        stream.cancel()
    status = node.GetStatus(pb.GetStatusRequest(doc_id=doc_id), timeout=10)
    print(json.dumps(status_json(pb, status), ensure_ascii=False))
    ok = not ended and all(reached.get(d, -1) >= target for d in args.to + args.cc)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
