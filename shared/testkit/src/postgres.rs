//! Throwaway PostgreSQL databases for tests.

use sea_orm::{ConnectionTrait, Database};

pub fn admin_url() -> String {
    std::env::var("AUGUR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database created for one test; call [`TestDb::drop_db`] at the end.
pub struct TestDb {
    admin: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl TestDb {
    /// Creates a fresh database, or returns `None` after a loud message when PostgreSQL is
    /// unreachable (a panic instead with `AUGUR_REQUIRE_POSTGRES=1`).
    pub async fn create() -> Option<Self> {
        let admin = admin_url();
        let db = match Database::connect(&admin).await {
            Ok(db) => db,
            Err(e) => {
                let msg =
                    format!("PostgreSQL at {admin} unreachable ({e}); set AUGUR_TEST_POSTGRES_URL");
                if crate::required("AUGUR_REQUIRE_POSTGRES") {
                    panic!("{msg}; AUGUR_REQUIRE_POSTGRES=1");
                }
                eprintln!("\n*** SKIPPED: {msg} ***\n");
                return None;
            }
        };
        let name = format!("augur_t_{:016x}", rand::random::<u64>());
        if let Err(e) = db
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
        {
            panic!("cannot create test database {name}: {e}");
        }
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(b, _)| b)
            .to_string();
        Some(Self {
            url: format!("{base}/{name}"),
            admin,
            name,
        })
    }

    pub async fn drop_db(self) {
        if let Ok(db) = Database::connect(&self.admin).await {
            let _ = db
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
        }
    }
}
