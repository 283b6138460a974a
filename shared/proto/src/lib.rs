//! Generated code for the Augur gRPC contracts in `proto/`.
//!
//! One module per protobuf package, following the package path: `augur::featurestore::v1`,
//! `augur::recommendation::v1`, ... The encoded file descriptor set of all of them is
//! [`FILE_DESCRIPTOR_SET`], which the runtime serves through gRPC reflection.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `google.protobuf.FileDescriptorSet` of every Augur proto (and their imports).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/augur_descriptor.bin"));

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
    pub mod recommendation {
        pub mod v1 {
            tonic::include_proto!("augur.recommendation.v1");
        }
    }
    pub mod forecast {
        pub mod v1 {
            tonic::include_proto!("augur.forecast.v1");
        }
    }
    pub mod churn {
        pub mod v1 {
            tonic::include_proto!("augur.churn.v1");
        }
    }
    pub mod risk {
        pub mod v1 {
            tonic::include_proto!("augur.risk.v1");
        }
    }
}

pub use augur::churn::v1 as churn;
pub use augur::common::v1 as common;
pub use augur::featurestore::v1 as featurestore;
pub use augur::forecast::v1 as forecast;
pub use augur::recommendation::v1 as recommendation;
pub use augur::risk::v1 as risk;
