//! A fresh PostgreSQL database per test, on the server `scripts/postgres.sh` starts
//! (`GPUMESH_TEST_POSTGRES` names another). A missing server fails the test: the store's
//! PostgreSQL path is never silently untested.

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use std::sync::atomic::{AtomicU32, Ordering};

pub const DEFAULT: &str = "postgres://gpumesh:gpumesh@127.0.0.1:5432/postgres";

/// A database that is dropped with this value.
pub struct Database {
    admin: String,
    name: String,
    pub url: String,
}

fn admin_url() -> String {
    std::env::var("GPUMESH_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT.to_string())
}

async fn admin(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {url} ({e}): run scripts/postgres.sh (it starts the \
             machine's cluster and makes the gpumesh role), or point GPUMESH_TEST_POSTGRES at a \
             server where this role may create databases"
        )
    })
}

impl Database {
    pub async fn create() -> Database {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin_url = admin_url();
        let name = format!(
            "gpumesh_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = admin(&admin_url).await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin_url);
        Database {
            url: format!("{base}/{name}"),
            admin: admin_url,
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin.clone(), self.name.clone());
        // Its own thread and runtime: a test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut c = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut c)
                    .await
                    .ok()
            })
        })
        .join();
    }
}
