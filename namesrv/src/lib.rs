//! Tern's NameServer: the route registry brokers register with and clients ask for routes.
//!
//! Brokers register every 30 s (REGISTER_BROKER) with their topic table; clients ask for a
//! topic's route (GET_ROUTEINFO_BY_TOPIC) or the cluster layout (GET_BROKER_CLUSTER_INFO). The
//! NameServer keeps nothing on disk: brokers re-register after a restart. Several NameServers run
//! side by side without knowing of each other; every broker registers with each of them.
//!
//! - [`config`]: [`NamesrvConfig`] (`conf/namesrv.toml`).
//! - [`route_table`]: the tables and their rules, synchronous and socket-free.
//! - [`processor`]: remoting requests → route table → responses.
//! - [`server`]: [`NameServer::start`], the scan for silent brokers, shutdown.

pub mod config;
pub mod error;
pub mod processor;
pub mod route_table;
pub mod server;

pub use config::NamesrvConfig;
pub use error::NamesrvError;
pub use processor::NamesrvProcessor;
pub use route_table::{BrokerRegistration, RegisterResult, RouteError, RouteTable};
pub use server::NameServer;
