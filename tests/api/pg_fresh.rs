//! A fresh PostgreSQL database per test on the server that
//! `WEBHOOKD_TEST_DATABASE_URL` names, so tests run in parallel without
//! seeing each other's rows, notifications or advisory locks; dropped
//! (`WITH (FORCE)`, closing what still uses it) when the test ends.

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

pub const VAR: &str = "WEBHOOKD_TEST_DATABASE_URL";

pub struct FreshDb {
    admin: String,
    name: String,
    /// The new database's URL: the admin URL with its path replaced.
    pub url: String,
}

impl FreshDb {
    /// A new, empty database; `None`, after one line saying how to enable
    /// the test, when the variable is unset.
    pub async fn create() -> Option<Self> {
        let Some(admin) = std::env::var(VAR).ok().filter(|v| !v.is_empty()) else {
            eprintln!(
                "skipped: needs PostgreSQL; set {VAR}=postgres://postgres@127.0.0.1:5432/test (a user who may \
                 create databases) to run it"
            );
            return None;
        };
        let name = format!("webhookd_t_{:016x}", fastrand::u64(..));
        let mut conn = admin_connection(&admin).await;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("CREATE DATABASE");
        conn.close().await.ok();
        let mut url = url::Url::parse(&admin).expect("WEBHOOKD_TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{name}"));
        Some(Self { admin, name, url: url.to_string() })
    }

    /// A connection to the new database, for the test's own checks.
    pub async fn connect(&self) -> PgConnection {
        admin_connection(&self.url).await
    }
}

async fn admin_connection(url: &str) -> PgConnection {
    let options = PgConnectOptions::from_str(url).expect("WEBHOOKD_TEST_DATABASE_URL is a PostgreSQL URL");
    PgConnection::connect_with(&options).await.expect("the test PostgreSQL server answers")
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime: a thread with a runtime of its
        // own does the async work, and is waited for.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let options = PgConnectOptions::from_str(&admin).ok()?;
                let mut conn = PgConnection::connect_with(&options).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::raw_sql(&sql).execute(&mut conn).await.ok()
            })
        });
        let _ = dropped.join();
    }
}
