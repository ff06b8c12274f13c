//! The control plane's API test suite: one binary, every test run against SQLite and
//! PostgreSQL (see `helpers::backends!`).

#[path = "../common/fixed_secrets.rs"]
mod fixed_secrets;
mod helpers;

mod audit;
mod auth;
mod bad_input;
mod caller_standing;
mod cli;
mod cli_exits;
mod cli_keys;
mod cli_reports;
mod cli_rotation;
mod concurrency;
mod dashboard;
mod dashboard_keys;
mod dashboard_portal;
mod dashboard_webhooks;
mod database_locked;
mod feed_lineage;
mod host_tokens;
mod keys;
mod leaks;
mod leaks_github;
mod lifecycle;
mod limits;
mod migrations;
mod openapi_document;
mod operations;
mod operator_settings;
mod org_writers;
mod out_of_range;
mod people;
mod people_invitations;
mod people_proxies;
mod people_roles;
mod people_settings;
mod portal;
mod portal_branding;
mod push_wakeup;
mod refusals;
mod replication_feed;
mod replication_push;
mod secrecy_at_rest;
mod several_instances;
mod sign_in_cleanup;

mod usage_api;
mod usage_ingest;
mod usage_request_ids;
mod webhooks;
mod webhooks_claim_race;
mod webhooks_delivery;
mod webhooks_expiry;
mod webhooks_expiry_recheck;
mod webhooks_history;
mod webhooks_rate_limited;
mod webhooks_record_order;
mod webhooks_transport;
