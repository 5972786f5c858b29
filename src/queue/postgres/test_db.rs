//! A fresh database per test on the server `WEBHOOKD_TEST_DATABASE_URL`
//! names, so tests run in parallel without seeing each other's rows,
//! notifications or advisory locks. Without the variable the tests that
//! need it are skipped, saying how to run them.

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::config::PostgresUrl;

pub(crate) const VAR: &str = "WEBHOOKD_TEST_DATABASE_URL";

pub(crate) struct TestDb {
    admin: String,
    name: String,
    pub url: PostgresUrl,
}

impl TestDb {
    /// A new, empty database; `None` (with one line saying why) without
    /// the variable.
    pub(crate) async fn create() -> Option<Self> {
        let Ok(admin) = std::env::var(VAR) else {
            // Once per test binary, and past the harness's capture (which
            // hides what passing tests print): the reader must see it.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "PostgreSQL store tests skipped: set {VAR}=postgres://postgres@127.0.0.1:5432/test \
                     (any server where that user may create databases) to run them"
                );
            });
            return None;
        };
        let name = format!("webhookd_t_{:016x}", fastrand::u64(..));
        let options = PgConnectOptions::from_str(&admin).expect("WEBHOOKD_TEST_DATABASE_URL is a PostgreSQL URL");
        let mut conn = PgConnection::connect_with(&options).await.expect("the test PostgreSQL server answers");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("CREATE DATABASE");
        conn.close().await.ok();
        let mut url = url::Url::parse(&admin).expect("a URL");
        url.set_path(&format!("/{name}"));
        let url = PostgresUrl::parse(url.as_str()).expect("valid");
        Some(Self { admin, name, url })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime: a thread of its own does the
        // async work and is waited for.
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
