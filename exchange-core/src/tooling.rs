//! The standard gRPC tooling services, served next to the exchange's own on the same port:
//! `grpc.health.v1.Health` (what load balancers, Kubernetes probes and `grpc_health_probe`
//! ask) and server reflection, v1 and v1alpha (what grpcurl, grpcui and Postman use to list
//! services and build requests without a copy of the `.proto` files).
//!
//! Reflection serves `exchange_proto::FILE_DESCRIPTOR_SET` (every exchange proto file) and the
//! health service's own descriptors. It reveals nothing that is not in the public protocol.
//! On the hub both sit behind the same mutual TLS as everything else.

use tonic::server::NamedService;
use tonic_health::{
    ServingStatus,
    pb::health_server::{Health as HealthService, HealthServer},
    server::HealthReporter,
};
use tonic_reflection::server::{
    Error as ReflectionError, v1::ServerReflection, v1::ServerReflectionServer,
    v1alpha::ServerReflection as ServerReflectionAlpha,
    v1alpha::ServerReflectionServer as ServerReflectionServerAlpha,
};

/// The health the daemon reports: serving from start until a shutdown begins.
#[derive(Debug, Clone)]
pub struct Health {
    reporter: HealthReporter,
    service: &'static str,
}

impl Health {
    /// Reports the daemon (`""`) and its service as no longer serving: called when a shutdown
    /// begins, so that probes see it before connections are refused.
    pub async fn stopping(&self) {
        for name in ["", self.service] {
            self.reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    }
}

/// The tooling services for a daemon whose main service is `S` (e.g. `HubServer<..>`): its
/// health handle, the health service, and reflection v1 and v1alpha.
#[allow(clippy::type_complexity)] // four services, each an opaque tonic type: named once here
pub async fn services<S: NamedService>() -> Result<
    (
        Health,
        HealthServer<impl HealthService>,
        ServerReflectionServer<impl ServerReflection>,
        ServerReflectionServerAlpha<impl ServerReflectionAlpha>,
    ),
    ReflectionError,
> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<S>().await;
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(exchange_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = builder().build_v1()?;
    let v1alpha = builder().build_v1alpha()?;
    let handle = Health {
        reporter,
        service: S::NAME,
    };
    Ok((handle, health, v1, v1alpha))
}
