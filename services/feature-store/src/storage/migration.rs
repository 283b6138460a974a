//! Schema migrations (sea-orm-migration). Run at start; the same migrations on SQLite and
//! PostgreSQL.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, blob, boolean, double, integer, small_integer, string, string_null,
};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(M0001CreateEvents), Box::new(M0002SeqLookups)]
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Seq,
    Kind,
    EventKey,
    CustomerId,
    Sku,
    Ts,
    IngestedAt,
    Payload,
}

#[derive(DeriveIden)]
enum OrderLines {
    Table,
    OrderId,
    LineNo,
    Seq,
    Sku,
    Ts,
    Quantity,
    UnitPrice,
    Promotion,
    StoreId,
    Channel,
    CustomerId,
}

struct M0001CreateEvents;

impl MigrationName for M0001CreateEvents {
    fn name(&self) -> &str {
        "m0001_create_events"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0001CreateEvents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .if_not_exists()
                    .col(big_integer(Events::Seq).primary_key())
                    .col(small_integer(Events::Kind))
                    .col(string(Events::EventKey))
                    .col(string_null(Events::CustomerId))
                    .col(string_null(Events::Sku))
                    .col(big_integer(Events::Ts))
                    .col(big_integer(Events::IngestedAt))
                    .col(blob(Events::Payload))
                    .to_owned(),
            )
            .await?;
        for (name, cols, unique) in [
            (
                "ux_events_kind_key",
                vec![Events::Kind, Events::EventKey],
                true,
            ),
            (
                "ix_events_customer_ts",
                vec![Events::CustomerId, Events::Ts],
                false,
            ),
            ("ix_events_sku_ts", vec![Events::Sku, Events::Ts], false),
            (
                "ix_events_kind_ts_seq",
                vec![Events::Kind, Events::Ts, Events::Seq],
                false,
            ),
        ] {
            let mut idx = Index::create();
            idx.name(name).table(Events::Table).if_not_exists();
            for c in cols {
                idx.col(c);
            }
            if unique {
                idx.unique();
            }
            manager.create_index(idx.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(OrderLines::Table)
                    .if_not_exists()
                    .col(string(OrderLines::OrderId))
                    .col(integer(OrderLines::LineNo))
                    .col(big_integer(OrderLines::Seq))
                    .col(string(OrderLines::Sku))
                    .col(big_integer(OrderLines::Ts))
                    .col(big_integer(OrderLines::Quantity))
                    .col(double(OrderLines::UnitPrice))
                    .col(boolean(OrderLines::Promotion))
                    .col(string(OrderLines::StoreId))
                    .col(string(OrderLines::Channel))
                    .col(string_null(OrderLines::CustomerId))
                    .primary_key(
                        Index::create()
                            .col(OrderLines::OrderId)
                            .col(OrderLines::LineNo),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            (
                "ix_order_lines_sku_ts",
                vec![OrderLines::Sku, OrderLines::Ts],
            ),
            (
                "ix_order_lines_ts",
                vec![OrderLines::Ts, OrderLines::OrderId, OrderLines::LineNo],
            ),
            ("ix_order_lines_customer", vec![OrderLines::CustomerId]),
        ] {
            let mut idx = Index::create();
            idx.name(name).table(OrderLines::Table).if_not_exists();
            for c in cols {
                idx.col(c);
            }
            manager.create_index(idx.to_owned()).await?;
        }
        Ok(())
    }
}

/// Entities' events are found by sequence number (the online state keeps each entity's
/// sequence numbers), so the randomly keyed customer / SKU indexes, which dominated the cost of
/// every write, go; order lines are found by the sequence number of their order.
struct M0002SeqLookups;

impl MigrationName for M0002SeqLookups {
    fn name(&self) -> &str {
        "m0002_seq_lookups"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0002SeqLookups {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("ix_events_customer_ts", Events::Table.into_iden()),
            ("ix_events_sku_ts", Events::Table.into_iden()),
            ("ix_order_lines_customer", OrderLines::Table.into_iden()),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).if_exists().to_owned())
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ix_order_lines_seq")
                    .table(OrderLines::Table)
                    .col(OrderLines::Seq)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}
