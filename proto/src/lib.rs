//! The exchange's wire protocol, generated at build time from `exchange/v1/*.proto`.
//!
//! Nothing here is written by hand but the names of the metadata headers that the `.proto`
//! comments define: domain types live in `exchange-core`, which converts at the edge. The
//! descriptor set is exported for gRPC server reflection.

/// Version 1 of the protocol (package `exchange.v1`).
pub mod v1 {
    #![allow(missing_docs, unreachable_pub)] // generated code
    #![allow(clippy::all)] // generated code is not ours to lint
    tonic::include_proto!("exchange.v1");
}

/// On-disk records (package `exchange.store.v1`): not on the wire, but versioned the same way.
pub mod store {
    /// Version 1 of the store records.
    pub mod v1 {
        #![allow(missing_docs, unreachable_pub)] // generated code
        #![allow(clippy::all)] // generated code is not ours to lint
        tonic::include_proto!("exchange.store.v1");
    }
}

/// The `Subscribe` header (v1.4) with which a node asks for several pushes per message, and a
/// hub says it takes several acknowledgements per message (`exchange/v1/hub.proto`).
pub const SUBSCRIBE_BATCH_HEADER: &str = "exchange-subscribe";
/// Its value.
pub const SUBSCRIBE_BATCH_VALUE: &str = "batch";

/// Whether `metadata` (a `Subscribe` request's or response's) says batches (v1.4).
pub fn says_batches(metadata: &tonic::metadata::MetadataMap) -> bool {
    metadata
        .get(SUBSCRIBE_BATCH_HEADER)
        .is_some_and(|v| v == SUBSCRIBE_BATCH_VALUE)
}

/// Says batches (v1.4) in `metadata`, a `Subscribe` request's or response's.
pub fn say_batches(metadata: &mut tonic::metadata::MetadataMap) {
    metadata.insert(
        SUBSCRIBE_BATCH_HEADER,
        tonic::metadata::MetadataValue::from_static(SUBSCRIBE_BATCH_VALUE),
    );
}

/// Encoded `FileDescriptorSet` of every exchange proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/exchange_descriptor.bin"));
