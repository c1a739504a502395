//! `keelctl store ...`: one function per subcommand, each parse → call → print.

use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use keel_client::store::{
    DeleteOptions, GrpcStore, ListOptions, Order, ReadOptions, Record, Store, WriteOptions, DEFAULT_NAME,
};
use keel_client::ConnectOptions;

use crate::output;
use crate::shared::parse_key_value;
use crate::Format;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Writes one record, replacing any record at the same key.
    Write {
        key: String,
        /// The value, as text.
        value: String,
        #[command(flatten)]
        table: TableArgs,
        /// Seconds until the record expires (default: it does not).
        #[arg(long, value_name = "SECS")]
        ttl: Option<u64>,
        /// Record metadata as key=value; repeat for more.
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        metadata: Vec<(String, String)>,
    },
    /// Shows the record at KEY, or every record whose key starts (--prefix) or ends (--suffix)
    /// with KEY.
    Read {
        key: String,
        /// Every record whose key starts with KEY.
        #[arg(long)]
        prefix: bool,
        /// Every record whose key ends with KEY.
        #[arg(long)]
        suffix: bool,
        /// At most N records.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Skip the first N matching records.
        #[arg(long, value_name = "N", default_value_t = 0)]
        offset: u64,
        #[arg(long, value_enum, default_value_t = OrderArg::Asc)]
        order: OrderArg,
        #[command(flatten)]
        table: TableArgs,
    },
    /// Deletes the record at KEY (a missing key is not an error).
    Delete {
        key: String,
        #[command(flatten)]
        table: TableArgs,
    },
    /// Shows the keys of a table.
    List {
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only keys ending with this.
        #[arg(long)]
        suffix: Option<String>,
        /// At most N keys.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Skip the first N matching keys.
        #[arg(long, value_name = "N", default_value_t = 0)]
        offset: u64,
        #[arg(long, value_enum, default_value_t = OrderArg::Asc)]
        order: OrderArg,
        #[command(flatten)]
        table: TableArgs,
    },
    /// Shows every database holding a record.
    Databases,
    /// Shows every table of a database holding a record.
    Tables {
        /// Database (default: micro).
        #[arg(long, default_value = "")]
        database: String,
    },
}

/// Which table a command works on.
#[derive(Debug, clap::Args)]
pub struct TableArgs {
    /// Database (default: micro).
    #[arg(long, default_value = "")]
    database: String,
    /// Table (default: micro).
    #[arg(long, default_value = "")]
    table: String,
}

impl TableArgs {
    /// "database/table", defaults shown, for messages.
    fn describe(&self) -> String {
        let name = |name: &str| if name.is_empty() { DEFAULT_NAME.to_string() } else { name.to_string() };
        format!("{}/{}", name(&self.database), name(&self.table))
    }
}

/// Key order of the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrderArg {
    Asc,
    Desc,
}

impl From<OrderArg> for Order {
    fn from(order: OrderArg) -> Order {
        match order {
            OrderArg::Asc => Order::Ascending,
            OrderArg::Desc => Order::Descending,
        }
    }
}

pub async fn run(
    command: Command,
    endpoints: &[String],
    options: &ConnectOptions,
    format: Format,
) -> anyhow::Result<()> {
    let store = GrpcStore::connect_with(endpoints, options).await?;
    match command {
        Command::Write { key, value, table, ttl, metadata } => {
            let record = Record { metadata: metadata.into_iter().collect(), ..Record::new(key, value) };
            let options = WriteOptions {
                database: table.database.clone(),
                table: table.table.clone(),
                ttl: ttl.map(Duration::from_secs),
                expiry: None,
            };
            store.write(&record, options).await?;
            output::store_done(format, "write", &record.key, &table.describe())
        }
        Command::Read { key, prefix, suffix, limit, offset, order, table } => {
            let options = ReadOptions {
                database: table.database.clone(),
                table: table.table.clone(),
                prefix,
                suffix,
                limit,
                offset,
                order: order.into(),
            };
            match store.read(&key, options).await {
                Ok(records) => output::records(format, &records),
                Err(keel_client::Error::NotFound) => {
                    anyhow::bail!("store: no record with key {key:?} in {}", table.describe())
                }
                Err(error) => Err(error.into()),
            }
        }
        Command::Delete { key, table } => {
            let options = DeleteOptions { database: table.database.clone(), table: table.table.clone() };
            store.delete(&key, options).await?;
            output::store_done(format, "delete", &key, &table.describe())
        }
        Command::List { prefix, suffix, limit, offset, order, table } => {
            let options = ListOptions {
                database: table.database,
                table: table.table,
                prefix,
                suffix,
                limit,
                offset,
                order: order.into(),
            };
            output::names(format, "KEY", &store.list(options).await?)
        }
        Command::Databases => output::names(format, "DATABASE", &store.databases().await?),
        Command::Tables { database } => output::names(format, "TABLE", &store.tables(&database).await?),
    }
}
