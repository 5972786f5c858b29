//! One integration-test binary: each module starts the real application on a
//! random port, against a mock GitHub API on loopback where GitHub is needed.

mod architecture;
mod client_scale;
mod deliveries_postgres;
mod docs_examples;
mod durability;
mod fairness;
mod github;
mod helpers;
mod hostile;
mod lifecycle;
mod load;
mod monitoring;
mod outbound;
mod pg_proxy;
mod pooling;
mod postgres_config;
mod process;
mod properties;
mod recovery;
mod rules;
mod scale_out;
mod store_backup;
mod store_safety;
mod systemd;
mod tls;
mod webhook;
mod worker;
