//! sea-orm entities of the feature store.

/// Every accepted event, in sequence order. `payload` is the normalised protobuf `Event`.
pub mod event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "events")]
    pub struct Model {
        /// Global write order, increasing in commit order (assigned under the writer lock; gaps
        /// where duplicates were skipped).
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        /// `model::EventKind` as a number.
        pub kind: i16,
        /// Deduplication key, unique per kind (see `Event::key`).
        pub event_key: String,
        /// Owner of the event; NULL for products, erasure markers and erased customers.
        pub customer_id: Option<String>,
        /// The event's single SKU (interactions, reviews, products).
        pub sku: Option<String>,
        /// Event time, microseconds since the epoch.
        pub ts: i64,
        /// Ingestion time, microseconds since the epoch.
        pub ingested_at: i64,
        #[sea_orm(column_type = "Blob")]
        pub payload: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One row per order line, written when an order id is first seen: the source of demand series
/// and product sales history.
pub mod order_line {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_lines")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub line_no: i32,
        pub seq: i64,
        pub sku: String,
        pub ts: i64,
        pub quantity: i64,
        pub unit_price: f64,
        pub promotion: bool,
        pub store_id: String,
        pub channel: String,
        pub customer_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
