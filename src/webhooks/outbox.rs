//! The outbox consumer: matches change events against triggers and stores one delivery row per
//! match before the replication slot may move past the event.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_postgres::Statement;

use super::registry::{LoadedTriggers, TriggerRegistry};
use crate::change::{ChangeEvent, EncodedEvent, Operation};
use crate::db::SharedClient;
use crate::pipeline::{Consumer, ConsumerError, EventBatch};
use crate::report::error_chain;

use super::definition::Trigger;

/// A delivery row before it is stored.
struct NewDelivery {
    trigger: String,
    event_id: String,
    row_key: String,
    body: String,
    commit_time: String,
}

/// Writes matching events to `walgate.webhook_deliveries`.
///
/// Delivery guarantee: `accept` returns only after the rows are committed, so the slot is never
/// confirmed past an event whose deliveries are not stored. Writing the same event again, as
/// happens after the stream restarts, inserts nothing (`ON CONFLICT DO NOTHING` on trigger and
/// event id).
pub struct Outbox {
    triggers: Arc<TriggerRegistry>,
    db: SharedClient,
    wake: Arc<Notify>,
    /// The prepared INSERT and the connection it belongs to.
    prepared: tokio::sync::Mutex<Option<(Arc<tokio_postgres::Client>, Statement)>>,
}

impl Outbox {
    /// Creates the consumer. `wake` is notified after new rows are committed.
    pub fn new(triggers: Arc<TriggerRegistry>, db: SharedClient, wake: Arc<Notify>) -> Self {
        Self {
            triggers,
            db,
            wake,
            prepared: tokio::sync::Mutex::new(None),
        }
    }

    async fn store(&self, events: &EventBatch) -> Result<(), ConsumerError> {
        let loaded = self.triggers.current();
        if loaded.set.is_empty() {
            return Ok(());
        }
        let rows = match_events(&loaded, events);
        if rows.is_empty() {
            return Ok(());
        }
        let fail = |message: String| ConsumerError {
            consumer: "webhook-outbox",
            message,
        };
        let client = self.db.get().await.map_err(|err| fail(error_chain(&err)))?;
        let insert = self
            .insert_statement(&client)
            .await
            .map_err(|err| fail(error_chain(&err)))?;
        let column =
            |pick: fn(&NewDelivery) -> &str| -> Vec<&str> { rows.iter().map(pick).collect() };
        client
            .execute(
                &insert,
                &[
                    &column(|row| &row.trigger),
                    &column(|row| &row.event_id),
                    &column(|row| &row.row_key),
                    &column(|row| &row.body),
                    &column(|row| &row.commit_time),
                ],
            )
            .await
            .map_err(|err| {
                fail(format!(
                    "storing {} deliveries failed: {}",
                    rows.len(),
                    error_chain(&err)
                ))
            })?;
        self.wake.notify_one();
        Ok(())
    }
}

/// The statement that stores delivery rows, deduplicated on trigger and event id.
const INSERT_DELIVERIES: &str = "INSERT INTO walgate.webhook_deliveries
        (trigger_name, event_id, row_key, body, commit_time)
    SELECT t, e, k, b, c::timestamptz
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(t, e, k, b, c)
    ON CONFLICT (trigger_name, event_id) DO NOTHING";

impl Outbox {
    /// Returns the INSERT prepared on `client`, preparing it once per connection.
    async fn insert_statement(
        &self,
        client: &Arc<tokio_postgres::Client>,
    ) -> Result<Statement, tokio_postgres::Error> {
        let mut cached = self.prepared.lock().await;
        if let Some((owner, statement)) = cached.as_ref() {
            if Arc::ptr_eq(owner, client) {
                return Ok(statement.clone());
            }
        }
        let statement = client.prepare(INSERT_DELIVERIES).await?;
        *cached = Some((client.clone(), statement.clone()));
        Ok(statement)
    }
}

impl Consumer for Outbox {
    fn name(&self) -> &'static str {
        "webhook-outbox"
    }

    fn accept<'a>(&'a self, events: &'a EventBatch) -> BoxFuture<'a, Result<(), ConsumerError>> {
        Box::pin(self.store(events))
    }
}

fn match_events(loaded: &LoadedTriggers, events: &EventBatch) -> Vec<NewDelivery> {
    let mut rows = Vec::new();
    for encoded in events {
        let event = &encoded.event;
        let triggers = loaded.set.for_table(&event.schema, &event.table);
        if triggers.is_empty() {
            continue;
        }
        let images = RowImages::parse(event);
        for trigger in triggers {
            if !trigger.fires_on(event.operation) || !columns_changed(trigger, event, &images) {
                continue;
            }
            let key_columns = loaded.keys.primary_key(&event.schema, &event.table);
            rows.push(NewDelivery {
                trigger: trigger.name.clone(),
                event_id: event.id.to_string(),
                row_key: row_key(key_columns, &images),
                body: payload(trigger, encoded),
                commit_time: event.transaction.commit_time.to_string(),
            });
        }
    }
    rows
}

/// The row images of an event, parsed once for key extraction and column comparison.
struct RowImages {
    new: Option<Map<String, Value>>,
    old: Option<Map<String, Value>>,
}

impl RowImages {
    fn parse(event: &ChangeEvent) -> Self {
        let parse = |image: Option<&str>| image.and_then(|text| serde_json::from_str(text).ok());
        Self {
            new: parse(event.new.as_deref()),
            old: parse(event.old.as_deref()),
        }
    }
}

/// True unless the trigger lists `columns` and the UPDATE changed none of them. Without an old
/// value to compare (which `check_catalog` rules out by requiring REPLICA IDENTITY FULL), a
/// column counts as changed, so a delivery is never lost to missing information.
fn columns_changed(trigger: &Trigger, event: &ChangeEvent, images: &RowImages) -> bool {
    let Some(columns) = &trigger.columns else {
        return true;
    };
    if event.operation != Operation::Update {
        return true;
    }
    let (Some(new), Some(old)) = (&images.new, &images.old) else {
        return true;
    };
    columns.iter().any(|column| {
        if event.unchanged_toast.iter().any(|name| &**name == column) {
            return false;
        }
        new.get(column) != old.get(column)
    })
}

/// Builds the primary-key values as JSON array text, from the new row (the old one for DELETE).
/// Empty when the table has no primary key, which orders all of its deliveries as one.
fn row_key(key_columns: &[String], images: &RowImages) -> String {
    if key_columns.is_empty() {
        return String::new();
    }
    let Some(image) = images.new.as_ref().or(images.old.as_ref()) else {
        return String::new();
    };
    let values: Vec<&Value> = key_columns
        .iter()
        .map(|column| image.get(column).unwrap_or(&Value::Null))
        .collect();
    serde_json::to_string(&values).unwrap_or_default()
}

/// Builds the webhook body: the documented payload (`trigger`, `table`, `operation`, `data`, `timestamp`)
/// plus `id`, `schema` and `lsn`. Row images are embedded as the decoder wrote them.
pub fn payload(trigger: &Trigger, encoded: &EncodedEvent) -> String {
    let event = &encoded.event;
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
    format!(
        r#"{{"trigger":{},"table":{},"schema":{},"operation":"{}","id":"{}","lsn":"{}","data":{{"new":{},"old":{}}},"timestamp":"{}"}}"#,
        quote(&trigger.name),
        quote(&event.table),
        quote(&event.schema),
        event.operation.as_str(),
        event.id,
        event.transaction.commit_lsn,
        event.new.as_deref().unwrap_or("null"),
        event.old.as_deref().unwrap_or("null"),
        event.transaction.commit_time,
    )
}
