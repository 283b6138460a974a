//! Schema migrations (sea-orm-migration). Run at start; the same migrations on SQLite and
//! PostgreSQL.
//!
//! Write cost decides the index set: every event is one row in `events`, and each secondary
//! index with randomly ordered keys dirties pages on every commit. Entities' events are
//! therefore found by sequence number (the online state keeps each entity's sequence
//! numbers), and `events` has only the dedup key and the (kind, time) scan index. One order's
//! events are found on the dedup key too (their keys follow from the order id, see
//! `model::order_key`), so the order lookup needs no index of its own.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, blob, boolean, double, integer, small_integer, string, string_null,
};
use sea_orm_migration::sea_orm::DbBackend;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(M0001CreateEvents)]
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

async fn index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden,
    cols: Vec<DynIden>,
    unique: bool,
) -> Result<(), DbErr> {
    let mut idx = Index::create();
    idx.name(name).table(table).if_not_exists();
    for c in cols {
        idx.col(c);
    }
    if unique {
        idx.unique();
    }
    manager.create_index(idx.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for M0001CreateEvents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sqlite = manager.get_database_backend() == DbBackend::Sqlite;
        // On SQLite only a column typed exactly INTEGER PRIMARY KEY is the rowid (one b-tree
        // instead of a table plus a primary-key index); it is 64-bit there anyway.
        let seq = if sqlite {
            integer(Events::Seq).primary_key().to_owned()
        } else {
            big_integer(Events::Seq).primary_key().to_owned()
        };
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .if_not_exists()
                    .col(seq)
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
        index(
            manager,
            "ux_events_kind_key",
            Events::Table,
            vec![Events::Kind.into_iden(), Events::EventKey.into_iden()],
            true,
        )
        .await?;
        index(
            manager,
            "ix_events_kind_ts_seq",
            Events::Table,
            vec![
                Events::Kind.into_iden(),
                Events::Ts.into_iden(),
                Events::Seq.into_iden(),
            ],
            false,
        )
        .await?;

        let mut lines = Table::create();
        lines
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
            );
        if sqlite {
            // Clustered on the primary key: one b-tree instead of two.
            lines.extra("WITHOUT ROWID");
        }
        manager.create_table(lines.to_owned()).await?;
        for (name, cols) in [
            (
                "ix_order_lines_sku_ts",
                vec![OrderLines::Sku.into_iden(), OrderLines::Ts.into_iden()],
            ),
            (
                "ix_order_lines_ts",
                vec![
                    OrderLines::Ts.into_iden(),
                    OrderLines::OrderId.into_iden(),
                    OrderLines::LineNo.into_iden(),
                ],
            ),
            ("ix_order_lines_seq", vec![OrderLines::Seq.into_iden()]),
        ] {
            index(manager, name, OrderLines::Table, cols, false).await?;
        }
        Ok(())
    }
}
