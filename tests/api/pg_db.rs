//! A fresh PostgreSQL database per test on the server
//! `WEBHOOKD_TEST_DATABASE_URL` names, dropped with the value; without the
//! variable the test is skipped, saying so in one line.

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

const VAR: &str = "WEBHOOKD_TEST_DATABASE_URL";

pub struct TestDatabase {
    /// The new database's URL (for `WEBHOOKD_STORE`).
    pub url: String,
    admin: String,
    name: String,
}

/// A new, empty database; `None` (with one line saying why) without the variable.
pub async fn test_database() -> Option<TestDatabase> {
    let Ok(admin) = std::env::var(VAR) else {
        eprintln!("skipped: needs PostgreSQL; set {VAR}=postgres://postgres@127.0.0.1:5432/test to run it");
        return None;
    };
    let name = format!("webhookd_t_{:016x}", fastrand::u64(..));
    let options = PgConnectOptions::from_str(&admin).expect("WEBHOOKD_TEST_DATABASE_URL is a PostgreSQL URL");
    let mut conn = PgConnection::connect_with(&options).await.expect("the test PostgreSQL server answers");
    sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("CREATE DATABASE");
    conn.close().await.ok();
    let mut url = url::Url::parse(&admin).expect("WEBHOOKD_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    Some(TestDatabase { url: url.to_string(), admin, name })
}

impl TestDatabase {
    /// A connection to this database, for looking at or arranging rows.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime: a thread with its own runtime
        // does the async work, and is waited for.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let options = PgConnectOptions::from_str(&admin).ok()?;
                let mut conn = PgConnection::connect_with(&options).await.ok()?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.ok()
            })
        });
        let _ = dropped.join();
    }
}
