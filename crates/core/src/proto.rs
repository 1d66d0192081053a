//! Generated types and gRPC stubs for `schemas/proto/studio.proto`.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("studio.finance.v1");
