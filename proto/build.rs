//! Compiles `exchange/v1/*.proto` with protox (pure Rust; no system protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=exchange");
    let files = [
        "exchange/v1/document.proto",
        "exchange/v1/hub.proto",
        "exchange/v1/relay.proto",
        "exchange/v1/node.proto",
        "exchange/v1/audit.proto",
        "exchange/v1/bundle.proto",
        "exchange/v1/backup.proto",
        "exchange/v1/stats.proto",
        "exchange/store/v1/store.proto",
    ];
    let fds = protox::compile(files, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("exchange_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
