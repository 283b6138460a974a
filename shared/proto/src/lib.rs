//! Generated code for the Augur gRPC contracts in `proto/`.
//!
//! One module per protobuf package, following the package path: `augur::featurestore::v1`,
//! `augur::recommendation::v1`, ... The encoded file descriptor set of all of them is
//! [`FILE_DESCRIPTOR_SET`], which the runtime serves through gRPC reflection.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `google.protobuf.FileDescriptorSet` of every Augur proto (and their imports).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/augur_descriptor.bin"));

pub mod augur {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("augur.common.v1");
        }
    }
    pub mod featurestore {
        pub mod v1 {
            tonic::include_proto!("augur.featurestore.v1");
        }
    }
}

pub use augur::common::v1 as common;
pub use augur::featurestore::v1 as featurestore;
