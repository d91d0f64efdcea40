//! The query code of the storage ports, written once.
//!
//! [`sql_store!`](crate::sql_store) defines a backend's store type (a pool, the feature-flag
//! default, and an optional writer lock) and implements the five storage ports
//! on it. Its body is plain diesel DSL over the portable [`schema`](crate::schema);
//! the macro only substitutes the connection type, the backend and the method
//! that opens a write transaction, so both backends run the very same queries.
//!
//! One exception, by design: the writes every message makes (the send and
//! the first delivery, ✓✓) and the audit row of every realtime connect are
//! each backend's own [`HotPaths`](crate::hot_paths::HotPaths) (`hot_paths`:
//! the Postgres adapter writes a send as one writable-CTE statement and groups
//! concurrent writes into one statement each; the SQLite adapter runs each
//! write whole on its connection's blocking thread). The rest of those port
//! methods (self-send refusal, the race settlement on a unique violation, the
//! explanation of an ack that changed nothing, the conversions) stays shared.
//!
//! Every query on a hot path has a fixed SQL text, so diesel keeps its prepared
//! statement per connection: `Option` fields are bound as NULL rather than
//! `DEFAULT` (see [`rows`](crate::rows)), fixed-shape `UPDATE`s and upserts are
//! marked with [`Cached`](crate::cached::Cached) (`.cached()`, each with the
//! reason it qualifies), and no hot query holds an `sql()` literal. The
//! adapters' `tests/statement_cache.rs` hold them to it.
//!
//! A message's `updated_at` never goes back: a change is stamped before it
//! waits for its lock or queue, so one stamped before a change already
//! stored keeps its own times (`deliveredAt`, `readAt`…) but leaves the
//! row's `updated_at` at the later one (`CASE WHEN`, which both backends
//! know, where Postgres says `GREATEST` and SQLite `MAX`), and a client
//! keeping the latest version of each message keeps the newest.
//!
//! Why a macro and not generic functions: diesel-async query bounds for a
//! generic backend must be spelled out per query and are unreadable; the macro
//! keeps one readable copy of each query (see STACK.md).

/// Defines a store type for one backend and implements `MessageStore`,
/// `NotificationStore`, `AuditLog`, `Directory` and `FeatureFlags` on it.
///
/// ```ignore
/// afritalk_adapter_sql::sql_store! {
///     /// Doc of the type.
///     pub struct PgStore {
///         connection: diesel_async::AsyncPgConnection,
///         backend: diesel::pg::Pg,
///         write_transaction: transaction,
///         // The backend's own writes of the hot paths (see below).
///         hot_paths: crate::hot_paths::PgHotPaths,
///     }
/// }
/// ```
///
/// `hot_paths` is a type implementing
/// [`HotPaths`](crate::hot_paths::HotPaths) for the store's pool: it is built
/// once from the pool by `from_pool` and writes sends, first deliveries and
/// connect audit rows under the contract stated on the trait.
/// `write_transaction` is the connection method that opens the other write
/// transactions (edits, deletions, reads).
///
/// The generated type has a private constructor
/// `from_pool(pool, serialize_writes: bool)`, the public builder
/// `with_messaging_default(bool)` and the public accessor `pool()`.
/// `serialize_writes` makes every write wait for an in-process lock (SQLite
/// has a single writer; queueing in-process is far cheaper than its busy
/// handler's sleep-and-retry).
#[macro_export]
macro_rules! sql_store {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            connection: $conn:ty,
            backend: $db:ty,
            write_transaction: $tx:ident,
            hot_paths: $paths:ty,
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone)]
        $vis struct $name {
            pool: $crate::__private::diesel_async::pooled_connection::deadpool::Pool<$conn>,
            messaging_default: bool,
            writer: ::std::option::Option<$crate::hot_paths::WriteLock>,
            /// The backend's own writes of the hot paths, if it has them.
            hot_paths: $paths,
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("pool", &self.pool.status())
                    .field("messaging_default", &self.messaging_default)
                    .finish()
            }
        }

        impl $name {
            fn from_pool(
                pool: $crate::__private::diesel_async::pooled_connection::deadpool::Pool<$conn>,
                serialize_writes: bool,
            ) -> Self {
                let writer: ::std::option::Option<$crate::hot_paths::WriteLock> =
                    serialize_writes.then(::std::default::Default::default);
                Self {
                    hot_paths: <$paths as $crate::hot_paths::HotPaths<_>>::new(
                        pool.clone(),
                        writer.clone(),
                    ),
                    pool,
                    messaging_default: true,
                    writer,
                }
            }

            /// Sets whether messaging is on for tenants whose flag was never set (default: on).
            pub fn with_messaging_default(mut self, enabled: bool) -> Self {
                self.messaging_default = enabled;
                self
            }

            /// The connection pool (for tools such as the benchmark's bulk seeding).
            pub fn pool(
                &self,
            ) -> &$crate::__private::diesel_async::pooled_connection::deadpool::Pool<$conn> {
                &self.pool
            }

            async fn conn(
                &self,
            ) -> ::std::result::Result<
                $crate::__private::diesel_async::pooled_connection::deadpool::Object<$conn>,
                $crate::__private::afritalk_ports::StoreError,
            > {
                self.pool.get().await.map_err(|e| {
                    $crate::__private::afritalk_ports::StoreError::Unavailable(format!(
                        "no database connection available: {e}"
                    ))
                })
            }

            async fn write_lock(
                &self,
            ) -> ::std::option::Option<$crate::__private::tokio::sync::MutexGuard<'_, ()>> {
                match &self.writer {
                    Some(lock) => Some(lock.lock().await),
                    None => None,
                }
            }
        }

        const _: () = {
            use $crate::__private::afritalk_ports::{
                AuditEntry, AuditFilter, AuditLog, ChangeCursor, Conversation, ConversationCursor,
                ConversationId, ConversationSummary, DeliveryOutcome, Directory, DirectoryQuery,
                DirectoryUser, FeatureFlags,
                Message, MessageContent, MessageId, MessageStore, NewMessage, Notification,
                NotificationCursor, NotificationId, NotificationKind, NotificationStatus, NotificationStore,
                PageSize, ParticipantPair, PurgeReceipt, SendOutcome, StoreError, StoreResult, TenantId, UserId,
            };
            use $crate::__private::chrono::{DateTime, Utc};
            use $crate::__private::diesel::prelude::*;
            use $crate::__private::diesel::sql_types::{BigInt, Text};
            use $crate::__private::diesel_async::{AsyncConnection as _, RunQueryDsl};
            use $crate::cached::CachedDsl;
            use $crate::error::{db_error, is_retryable_conflict, is_unique_violation, TxError};
            use $crate::functions::coalesce;
            use $crate::rows::{
                convert_all, status_rank, to_db, AuditRow, ConversationRow, DirectoryIdentity, DirectoryUserRow,
                MessageRow, NotificationRow, SendRows, TenantSettingRow,
            };
            use $crate::schema::{
                conversations, directory_users, messages, messaging_audit_log, notifications,
                tenant_settings,
            };

            type Db = $db;

            fn limit_of(limit: PageSize) -> i64 {
                i64::from(limit.get())
            }

            /// `%text%` with LIKE's own characters escaped by `\\`.
            fn like_pattern(text: &$crate::__private::afritalk_ports::SearchText) -> String {
                let mut pattern = String::from("%");
                for c in text.as_str().chars() {
                    if matches!(c, '%' | '_' | '\\') {
                        pattern.push('\\');
                    }
                    pattern.push(c);
                }
                pattern.push('%');
                pattern
            }

            /// The message stored earlier under the send's client message id, if any.
            async fn message_by_client_id(
                conn: &mut $conn,
                new: &NewMessage,
            ) -> QueryResult<Option<MessageRow>> {
                let Some(client_id) = &new.client_message_id else {
                    return Ok(None);
                };
                messages::table
                    .filter(messages::tenant_id.eq(new.tenant_id.as_str()))
                    .filter(messages::sender_id.eq(new.sender_id.as_str()))
                    .filter(messages::client_message_id.eq(client_id.as_str()))
                    .select(MessageRow::as_select())
                    .first(conn)
                    .await
                    .optional()
            }

            /// The send through the backend's hot paths.
            async fn send_rows(
                store: &$name,
                new: &NewMessage,
                first: ConversationRow,
            ) -> Result<SendRows, TxError> {
                use $crate::hot_paths::HotPaths as _;
                store
                    .hot_paths
                    .send($crate::hot_paths::SendInput::new(new, first))
                    .await
            }

            /// A first delivery through the backend's hot paths.
            async fn first_delivery(
                store: &$name,
                input: $crate::hot_paths::DeliveryInput,
            ) -> Result<Option<MessageRow>, TxError> {
                use $crate::hot_paths::HotPaths as _;
                store.hot_paths.first_delivery(input).await
            }

            /// An audit row through the backend's hot paths.
            async fn audit_row(store: &$name, row: AuditRow) -> Result<(), TxError> {
                use $crate::hot_paths::HotPaths as _;
                store.hot_paths.audit(row).await
            }

            async fn message_row(
                conn: &mut $conn,
                tenant: &TenantId,
                id: MessageId,
            ) -> QueryResult<Option<MessageRow>> {
                messages::table
                    .filter(messages::tenant_id.eq(tenant.as_str()))
                    .filter(messages::id.eq(id.to_string()))
                    .select(MessageRow::as_select())
                    .first(conn)
                    .await
                    .optional()
            }

            /// Why a guarded update of one message changed nothing.
            async fn explain_unchanged(
                conn: &mut $conn,
                tenant: &TenantId,
                id: MessageId,
                deleted: &str,
            ) -> Result<(), TxError> {
                match message_row(conn, tenant, id).await? {
                    Some(_) => Err(StoreError::Conflict(deleted.to_owned()).into()),
                    None => Err(StoreError::NotFound.into()),
                }
            }

            /// Gives the notification created with `message` (see
            /// `NewMessage::notification`) the text `text`, after an edit or delete.
            async fn retext_notification(
                conn: &mut $conn,
                message: &MessageRow,
                text: &str,
            ) -> Result<(), TxError> {
                // The rank list and `created_at` let the (tenant, user, rank,
                // created_at) index find the row directly instead of scanning all
                // of the recipient's notifications.
                $crate::__private::diesel::update(
                    notifications::table
                        .filter(notifications::tenant_id.eq(&message.tenant_id))
                        .filter(notifications::user_id.eq(&message.recipient_id))
                        .filter(notifications::status_rank.eq_any([0, 1, 2]))
                        .filter(notifications::created_at.eq(message.created_at))
                        .filter(notifications::kind.eq(NotificationKind::Message.as_str()))
                        .filter(notifications::related_entity_type.eq("message"))
                        .filter(notifications::related_entity_id.eq(&message.id)),
                )
                .set(notifications::message.eq(text))
                // Fixed shape: three ranks, the same filters every call.
                .cached()
                .execute(conn)
                .await?;
                Ok(())
            }

            #[$crate::__private::async_trait]
            impl MessageStore for $name {
                async fn send(&self, new: NewMessage) -> StoreResult<SendOutcome> {
                    let Some(first) = ConversationRow::first_for(&new) else {
                        return Err(StoreError::Conflict(
                            "sender and recipient are the same user".into(),
                        ));
                    };
                    // The hot paths take the write lock themselves (see `HotPaths`).
                    match send_rows(self, &new, first).await {
                        Ok(SendRows::Stored {
                            conversation,
                            message,
                            created,
                        }) => Ok(SendOutcome::Stored {
                            message: message.try_into()?,
                            conversation: conversation.try_into()?,
                            conversation_created: created,
                        }),
                        Ok(SendRows::Duplicate(message)) => Ok(SendOutcome::Duplicate {
                            message: message.try_into()?,
                        }),
                        Err(err) if is_unique_violation(&err) => {
                            // Rolled back. A concurrent retry may have won the race
                            // on the client message id; otherwise an id was reused.
                            let mut pooled = self.conn().await?;
                            let conn: &mut $conn = &mut pooled;
                            let winner = message_by_client_id(conn, &new)
                                .await
                                .map_err(|e| db_error("looking up a client message id", e))?;
                            if let Some(message) = winner {
                                return Ok(SendOutcome::Duplicate {
                                    message: message.try_into()?,
                                });
                            }
                            Err(StoreError::Conflict(format!(
                                "an id of this send already exists: {}",
                                err.into_store("storing a message")
                            )))
                        }
                        Err(err) => Err(err.into_store("storing a message")),
                    }
                }

                async fn conversation_between(
                    &self,
                    tenant: &TenantId,
                    pair: &ParticipantPair,
                ) -> StoreResult<Option<Conversation>> {
                    let mut conn = self.conn().await?;
                    let row = conversations::table
                        .filter(conversations::tenant_id.eq(tenant.as_str()))
                        .filter(conversations::user_one_id.eq(pair.low().as_str()))
                        .filter(conversations::user_two_id.eq(pair.high().as_str()))
                        .select(ConversationRow::as_select())
                        .first(&mut conn)
                        .await
                        .optional()
                        .map_err(|e| db_error("reading a conversation", e))?;
                    row.map(Conversation::try_from).transpose()
                }

                async fn conversation(
                    &self,
                    tenant: &TenantId,
                    id: ConversationId,
                ) -> StoreResult<Option<Conversation>> {
                    let mut conn = self.conn().await?;
                    let row = conversations::table
                        .filter(conversations::tenant_id.eq(tenant.as_str()))
                        .filter(conversations::id.eq(id.to_string()))
                        .select(ConversationRow::as_select())
                        .first(&mut conn)
                        .await
                        .optional()
                        .map_err(|e| db_error("reading a conversation", e))?;
                    row.map(Conversation::try_from).transpose()
                }

                async fn has_written(
                    &self,
                    tenant: &TenantId,
                    conversation: ConversationId,
                    user: &UserId,
                ) -> StoreResult<bool> {
                    let mut conn = self.conn().await?;
                    $crate::__private::diesel::select($crate::__private::diesel::dsl::exists(
                        messages::table
                            .filter(messages::tenant_id.eq(tenant.as_str()))
                            .filter(messages::conversation_id.eq(conversation.to_string()))
                            .filter(messages::sender_id.eq(user.as_str())),
                    ))
                    .get_result::<bool>(&mut conn)
                    .await
                    .map_err(|e| db_error("checking whether a user wrote", e))
                }

                async fn message(
                    &self,
                    tenant: &TenantId,
                    id: MessageId,
                ) -> StoreResult<Option<Message>> {
                    let mut pooled = self.conn().await?;
                    let row = message_row(&mut pooled, tenant, id)
                        .await
                        .map_err(|e| db_error("reading a message", e))?;
                    row.map(Message::try_from).transpose()
                }

                async fn edit(
                    &self,
                    tenant: &TenantId,
                    id: MessageId,
                    content: MessageContent,
                    edited_at: DateTime<Utc>,
                    audit: AuditEntry,
                ) -> StoreResult<Message> {
                    let at = to_db(edited_at);
                    let audit = AuditRow::from(&audit);
                    let _writer = self.write_lock().await;
                    let mut pooled = self.conn().await?;
                    let conn: &mut $conn = &mut pooled;
                    let row = conn
                        .$tx(async |tx| {
                            let row: Option<MessageRow> = $crate::__private::diesel::update(
                                messages::table
                                    .filter(messages::tenant_id.eq(tenant.as_str()))
                                    .filter(messages::id.eq(id.to_string()))
                                    .filter(messages::deleted_at.is_null()),
                            )
                            .set((
                                messages::content.eq(content.as_str()),
                                messages::edited_at.eq(Some(at)),
                                // The later of the two: never back (see the module doc).
                                messages::updated_at.eq($crate::__private::diesel::dsl::case_when(
                                    messages::updated_at.gt(at),
                                    messages::updated_at,
                                )
                                .otherwise(at)),
                            ))
                            .returning(MessageRow::as_returning())
                            // Fixed shape: the same filters and SET columns every call.
                            .cached()
                            .get_result(tx)
                            .await
                            .optional()?;
                            let Some(row) = row else {
                                explain_unchanged(tx, tenant, id, "the message is deleted").await?;
                                return Err(StoreError::NotFound.into());
                            };
                            retext_notification(tx, &row, &content.notification_preview()).await?;
                            $crate::__private::diesel::insert_into(messaging_audit_log::table)
                                .values(&audit)
                                .execute(tx)
                                .await?;
                            Ok::<_, TxError>(row)
                        })
                        .await
                        .map_err(|e| e.into_store("editing a message"))?;
                    row.try_into()
                }

                async fn delete(
                    &self,
                    tenant: &TenantId,
                    id: MessageId,
                    deleted_at: DateTime<Utc>,
                    audit: AuditEntry,
                ) -> StoreResult<Message> {
                    let at = to_db(deleted_at);
                    let audit = AuditRow::from(&audit);
                    let _writer = self.write_lock().await;
                    let mut pooled = self.conn().await?;
                    let conn: &mut $conn = &mut pooled;
                    let row = conn
                        .$tx(async |tx| {
                            let row: Option<MessageRow> = $crate::__private::diesel::update(
                                messages::table
                                    .filter(messages::tenant_id.eq(tenant.as_str()))
                                    .filter(messages::id.eq(id.to_string()))
                                    .filter(messages::deleted_at.is_null()),
                            )
                            .set((
                                messages::content.eq(""),
                                messages::deleted_at.eq(Some(at)),
                                // The later of the two: never back (see the module doc).
                                messages::updated_at.eq($crate::__private::diesel::dsl::case_when(
                                    messages::updated_at.gt(at),
                                    messages::updated_at,
                                )
                                .otherwise(at)),
                            ))
                            .returning(MessageRow::as_returning())
                            // Fixed shape: the same filters and SET columns every call.
                            .cached()
                            .get_result(tx)
                            .await
                            .optional()?;
                            let Some(row) = row else {
                                explain_unchanged(tx, tenant, id, "the message is already deleted")
                                    .await?;
                                return Err(StoreError::NotFound.into());
                            };
                            retext_notification(tx, &row, "").await?;
                            $crate::__private::diesel::insert_into(messaging_audit_log::table)
                                .values(&audit)
                                .execute(tx)
                                .await?;
                            Ok::<_, TxError>(row)
                        })
                        .await
                        .map_err(|e| e.into_store("deleting a message"))?;
                    row.try_into()
                }

                async fn mark_delivered(
                    &self,
                    tenant: &TenantId,
                    id: MessageId,
                    recipient: &UserId,
                    at: DateTime<Utc>,
                ) -> StoreResult<DeliveryOutcome> {
                    // The common case in one write: the recipient check and the
                    // first delivery together (the hot paths take the write lock).
                    let input = $crate::hot_paths::DeliveryInput {
                        tenant_id: tenant.as_str().to_owned(),
                        id: id.to_string(),
                        recipient_id: recipient.as_str().to_owned(),
                        at: to_db(at),
                    };
                    // Twice at most: an update can miss a row that another
                    // write (an edit, a delete) changed while it waited for
                    // the row (Postgres rechecks the new version by its
                    // address, which that write moved), or one stored only
                    // after it looked. The second try sees either as it is.
                    for _ in 0..2 {
                        let updated = first_delivery(self, input.clone())
                            .await
                            .map_err(|e| e.into_store("marking a message delivered"))?;
                        if let Some(row) = updated {
                            return Ok(DeliveryOutcome::Delivered(row.try_into()?));
                        }
                        // Nothing changed: the stored row says why.
                        let mut pooled = self.conn().await?;
                        let conn: &mut $conn = &mut pooled;
                        let row = message_row(conn, tenant, id)
                            .await
                            .map_err(|e| db_error("reading a message", e))?
                            .ok_or(StoreError::NotFound)?;
                        if row.recipient_id != recipient.as_str() {
                            return Ok(DeliveryOutcome::NotRecipient(row.try_into()?));
                        }
                        if row.delivered_at.is_some() {
                            return Ok(DeliveryOutcome::AlreadyDelivered(row.try_into()?));
                        }
                    }
                    Err(StoreError::NotFound)
                }

                async fn mark_read(
                    &self,
                    tenant: &TenantId,
                    conversation: ConversationId,
                    reader: &UserId,
                    from_seq: i64,
                    to_seq: i64,
                    at: DateTime<Utc>,
                    audit: AuditEntry,
                ) -> StoreResult<Vec<Message>> {
                    let at = to_db(at);
                    let audit = AuditRow::from(&audit);
                    let _writer = self.write_lock().await;
                    let mut pooled = self.conn().await?;
                    let conn: &mut $conn = &mut pooled;
                    // Once more if Postgres picked this one to break a deadlock:
                    // a batch of ✓✓ locks its rows in id order, this update in
                    // its own, and the reader should not see an error for it.
                    let mut retried = false;
                    let mut rows = loop {
                        let done = conn
                            .$tx(async |tx| {
                                let rows: Vec<MessageRow> = $crate::__private::diesel::update(
                                    messages::table
                                        .filter(messages::tenant_id.eq(tenant.as_str()))
                                        .filter(messages::conversation_id.eq(conversation.to_string()))
                                        .filter(messages::recipient_id.eq(reader.as_str()))
                                        .filter(messages::seq.between(from_seq, to_seq))
                                        .filter(messages::read_at.is_null())
                                        .filter(messages::deleted_at.is_null()),
                                )
                                .set((
                                    messages::read_at.eq(Some(at)),
                                    messages::delivered_at.eq(coalesce(messages::delivered_at, Some(at))),
                                    // The later of the two: never back (see the module doc).
                                messages::updated_at.eq($crate::__private::diesel::dsl::case_when(
                                    messages::updated_at.gt(at),
                                    messages::updated_at,
                                )
                                .otherwise(at)),
                                ))
                                .returning(MessageRow::as_returning())
                                // Fixed shape: the same filters and SET columns every call.
                                .cached()
                                .get_results(tx)
                                .await?;
                                if !rows.is_empty() {
                                    $crate::__private::diesel::insert_into(messaging_audit_log::table)
                                        .values(&audit)
                                        .execute(tx)
                                        .await?;
                                }
                                Ok::<_, TxError>(rows)
                            })
                            .await;
                        match done {
                            Err(err) if !retried && is_retryable_conflict(&err) => retried = true,
                            done => break done.map_err(|e| e.into_store("marking messages read"))?,
                        }
                    };
                    rows.sort_by_key(|r| r.seq);
                    convert_all(rows)
                }

                async fn conversations(
                    &self,
                    tenant: &TenantId,
                    user: &UserId,
                    after: Option<ConversationCursor>,
                    limit: PageSize,
                ) -> StoreResult<Vec<ConversationSummary>> {
                    // Unread count as a correlated subquery: evaluated for the rows of
                    // the page only, through the partial unread index. Written in the
                    // DSL, not as an `sql()` literal: diesel never keeps a statement
                    // holding a literal prepared.
                    let unread_messages = $crate::__private::diesel::alias!(messages as unread);
                    let unread = unread_messages
                        .filter(
                            unread_messages
                                .field(messages::tenant_id)
                                .eq(conversations::tenant_id),
                        )
                        .filter(
                            unread_messages
                                .field(messages::recipient_id)
                                .eq(user.as_str().to_owned()),
                        )
                        .filter(
                            unread_messages
                                .field(messages::conversation_id)
                                .eq(conversations::id),
                        )
                        .filter(unread_messages.field(messages::read_at).is_null())
                        .filter(unread_messages.field(messages::deleted_at).is_null())
                        .select($crate::__private::diesel::dsl::count_star())
                        .single_value();
                    // The page's ids first (keyset; each side of the pair found by
                    // its index, then sorted and cut by LIMIT), then the join to each
                    // one's last message: the join touches 50 rows, not every
                    // conversation of the user.
                    let mut page_ids = conversations::table
                        .filter(conversations::tenant_id.eq(tenant.as_str().to_owned()))
                        .filter(
                            conversations::user_one_id
                                .eq(user.as_str().to_owned())
                                .or(conversations::user_two_id.eq(user.as_str().to_owned())),
                        )
                        .order((conversations::last_message_at.desc(), conversations::id.desc()))
                        .limit(limit_of(limit))
                        .select(conversations::id)
                        .into_boxed::<Db>();
                    if let Some(cursor) = after {
                        let at = to_db(cursor.last_message_at);
                        page_ids = page_ids.filter(
                            conversations::last_message_at.lt(at).or(conversations::last_message_at
                                .eq(at)
                                .and(conversations::id.lt(cursor.id.to_string()))),
                        );
                    }
                    let query = conversations::table
                        .left_join(
                            messages::table.on(messages::conversation_id
                                .eq(conversations::id)
                                .and(messages::seq.eq(conversations::last_seq))),
                        )
                        .filter(conversations::id.eq_any(page_ids))
                        .filter(conversations::tenant_id.eq(tenant.as_str().to_owned()))
                        .select((
                            ConversationRow::as_select(),
                            Option::<MessageRow>::as_select(),
                            unread,
                        ))
                        .order((conversations::last_message_at.desc(), conversations::id.desc()));
                    let mut conn = self.conn().await?;
                    let rows: Vec<(ConversationRow, Option<MessageRow>, Option<i64>)> = query
                        .load(&mut conn)
                        .await
                        .map_err(|e| db_error("listing conversations", e))?;
                    rows.into_iter()
                        .map(|(conversation, last, unread)| {
                            Ok(ConversationSummary {
                                conversation: conversation.try_into()?,
                                last_message: last.map(Message::try_from).transpose()?,
                                unread_count: unread
                                    .and_then(|n| u64::try_from(n).ok())
                                    .unwrap_or(0),
                            })
                        })
                        .collect()
                }

                async fn conversation_partners(
                    &self,
                    tenant: &TenantId,
                    user: &UserId,
                    limit: PageSize,
                ) -> StoreResult<Vec<UserId>> {
                    let mut conn = self.conn().await?;
                    let rows: Vec<ConversationRow> = conversations::table
                        .filter(conversations::tenant_id.eq(tenant.as_str()))
                        .filter(
                            conversations::user_one_id
                                .eq(user.as_str())
                                .or(conversations::user_two_id.eq(user.as_str())),
                        )
                        .order((conversations::last_message_at.desc(), conversations::id.desc()))
                        .limit(limit_of(limit))
                        .select(ConversationRow::as_select())
                        .load(&mut conn)
                        .await
                        .map_err(|e| db_error("listing conversation partners", e))?;
                    let mut partners = Vec::with_capacity(rows.len());
                    for row in rows {
                        let conversation: Conversation = row.try_into()?;
                        partners.extend(conversation.other_participant(user).cloned());
                    }
                    Ok(partners)
                }

                async fn history(
                    &self,
                    tenant: &TenantId,
                    conversation: ConversationId,
                    before_seq: Option<i64>,
                    limit: PageSize,
                ) -> StoreResult<Vec<Message>> {
                    let mut conn = self.conn().await?;
                    let rows = messages::table
                        .filter(messages::tenant_id.eq(tenant.as_str()))
                        .filter(messages::conversation_id.eq(conversation.to_string()))
                        .filter(messages::seq.lt(before_seq.unwrap_or(i64::MAX)))
                        .order(messages::seq.desc())
                        .limit(limit_of(limit))
                        .select(MessageRow::as_select())
                        .load(&mut conn)
                        .await
                        .map_err(|e| db_error("reading history", e))?;
                    convert_all(rows)
                }

                async fn messages_after(
                    &self,
                    tenant: &TenantId,
                    conversation: ConversationId,
                    after_seq: i64,
                    limit: PageSize,
                ) -> StoreResult<Vec<Message>> {
                    let mut conn = self.conn().await?;
                    let rows = messages::table
                        .filter(messages::tenant_id.eq(tenant.as_str()))
                        .filter(messages::conversation_id.eq(conversation.to_string()))
                        .filter(messages::seq.gt(after_seq))
                        .order(messages::seq.asc())
                        .limit(limit_of(limit))
                        .select(MessageRow::as_select())
                        .load(&mut conn)
                        .await
                        .map_err(|e| db_error("reading messages after a seq", e))?;
                    convert_all(rows)
                }

                async fn changes_since(
                    &self,
                    tenant: &TenantId,
                    user: &UserId,
                    since: ChangeCursor,
                    limit: PageSize,
                ) -> StoreResult<Vec<Message>> {
                    let at = to_db(since.updated_at);
                    let mut query = messages::table
                        .filter(messages::tenant_id.eq(tenant.as_str().to_owned()))
                        .filter(
                            messages::sender_id
                                .eq(user.as_str().to_owned())
                                .or(messages::recipient_id.eq(user.as_str().to_owned())),
                        )
                        .order((messages::updated_at.asc(), messages::id.asc()))
                        .limit(limit_of(limit))
                        .select(MessageRow::as_select())
                        .into_boxed::<Db>();
                    query = match since.id {
                        Some(id) => query.filter(messages::updated_at.gt(at).or(messages::updated_at
                            .eq(at)
                            .and(messages::id.gt(id.to_string())))),
                        None => query.filter(messages::updated_at.ge(at)),
                    };
                    let mut conn = self.conn().await?;
                    let rows = query
                        .load(&mut conn)
                        .await
                        .map_err(|e| db_error("reading changes", e))?;
                    convert_all(rows)
                }
            }

            #[$crate::__private::async_trait]
            impl NotificationStore for $name {
                async fn create(
                    &self,
                    notification: Notification,
                    audit: AuditEntry,
                ) -> StoreResult<()> {
                    let row = NotificationRow::from(&notification);
                    let audit = AuditRow::from(&audit);
                    let _writer = self.write_lock().await;
                    let mut pooled = self.conn().await?;
                    let conn: &mut $conn = &mut pooled;
                    let result = conn
                        .$tx(async |tx| {
                            $crate::__private::diesel::insert_into(notifications::table)
                                .values(&row)
                                .execute(tx)
                                .await?;
                            $crate::__private::diesel::insert_into(messaging_audit_log::table)
                                .values(&audit)
                                .execute(tx)
                                .await?;
                            Ok::<_, TxError>(())
                        })
                        .await;
                    match result {
                        Ok(()) => Ok(()),
                        Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict(
                            "a notification or audit row with this id already exists".into(),
                        )),
                        Err(err) => Err(err.into_store("storing a notification")),
                    }
                }

                async fn notification(
                    &self,
                    tenant: &TenantId,
                    id: NotificationId,
                ) -> StoreResult<Option<Notification>> {
                    let mut conn = self.conn().await?;
                    let row = notifications::table
                        .filter(notifications::tenant_id.eq(tenant.as_str()))
                        .filter(notifications::id.eq(id.to_string()))
                        .select(NotificationRow::as_select())
                        .first(&mut conn)
                        .await
                        .optional()
                        .map_err(|e| db_error("reading a notification", e))?;
                    row.map(Notification::try_from).transpose()
                }

                async fn list(
                    &self,
                    tenant: &TenantId,
                    user: &UserId,
                    after: Option<NotificationCursor>,
                    include_archived: bool,
                    limit: PageSize,
                ) -> StoreResult<Vec<Notification>> {
                    let mut query = notifications::table
                        .filter(notifications::tenant_id.eq(tenant.as_str().to_owned()))
                        .filter(notifications::user_id.eq(user.as_str().to_owned()))
                        .order((
                            notifications::status_rank.asc(),
                            notifications::created_at.desc(),
                            notifications::id.desc(),
                        ))
                        .limit(limit_of(limit))
                        .select(NotificationRow::as_select())
                        .into_boxed::<Db>();
                    if !include_archived {
                        query = query.filter(
                            notifications::status_rank.lt(status_rank(NotificationStatus::Archived)),
                        );
                    }
                    if let Some(cursor) = after {
                        let rank = status_rank(cursor.status);
                        let at = to_db(cursor.created_at);
                        query = query.filter(
                            notifications::status_rank.gt(rank).or(notifications::status_rank
                                .eq(rank)
                                .and(notifications::created_at.lt(at).or(notifications::created_at
                                    .eq(at)
                                    .and(notifications::id.lt(cursor.id.to_string()))))),
                        );
                    }
                    let mut conn = self.conn().await?;
                    let rows = query
                        .load(&mut conn)
                        .await
                        .map_err(|e| db_error("listing notifications", e))?;
                    convert_all(rows)
                }

                async fn set_status(
                    &self,
                    tenant: &TenantId,
                    user: &UserId,
                    id: NotificationId,
                    status: NotificationStatus,
                ) -> StoreResult<Notification> {
                    let _writer = self.write_lock().await;
                    let mut conn = self.conn().await?;
                    let mine = notifications::table
                        .filter(notifications::tenant_id.eq(tenant.as_str()))
                        .filter(notifications::user_id.eq(user.as_str()))
                        .filter(notifications::id.eq(id.to_string()));
                    // Only forward: the rank condition is part of the write, so a
                    // device that read `unread` cannot undo another's archive.
                    let moved: Option<NotificationRow> = $crate::__private::diesel::update(
                        mine.clone().filter(notifications::status_rank.lt(status_rank(status))),
                    )
                    .set(notifications::status_rank.eq(status_rank(status)))
                    .returning(NotificationRow::as_returning())
                    // Fixed shape: the same filters and SET column every call.
                    .cached()
                    .get_result(&mut conn)
                    .await
                    .optional()
                    .map_err(|e| db_error("setting a notification status", e))?;
                    let row = match moved {
                        Some(row) => row,
                        None => mine
                            .select(NotificationRow::as_select())
                            .first(&mut conn)
                            .await
                            .optional()
                            .map_err(|e| db_error("reading a notification", e))?
                            .ok_or(StoreError::NotFound)?,
                    };
                    row.try_into()
                }

                async fn unread_count(&self, tenant: &TenantId, user: &UserId) -> StoreResult<u64> {
                    let mut conn = self.conn().await?;
                    let count: i64 = notifications::table
                        .filter(notifications::tenant_id.eq(tenant.as_str()))
                        .filter(notifications::user_id.eq(user.as_str()))
                        .filter(notifications::status_rank.eq(status_rank(NotificationStatus::Unread)))
                        .count()
                        .get_result(&mut conn)
                        .await
                        .map_err(|e| db_error("counting unread notifications", e))?;
                    Ok(u64::try_from(count).unwrap_or(0))
                }

                async fn mark_all_read(&self, tenant: &TenantId, user: &UserId) -> StoreResult<u64> {
                    let _writer = self.write_lock().await;
                    let mut conn = self.conn().await?;
                    let changed = $crate::__private::diesel::update(
                        notifications::table
                            .filter(notifications::tenant_id.eq(tenant.as_str()))
                            .filter(notifications::user_id.eq(user.as_str()))
                            .filter(
                                notifications::status_rank
                                    .eq(status_rank(NotificationStatus::Unread)),
                            ),
                    )
                    .set(notifications::status_rank.eq(status_rank(NotificationStatus::Read)))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| db_error("marking notifications read", e))?;
                    Ok(changed as u64)
                }

                async fn mark_read_for_messages(
                    &self,
                    tenant: &TenantId,
                    user: &UserId,
                    messages: &[MessageId],
                ) -> StoreResult<u64> {
                    if messages.is_empty() {
                        return Ok(0);
                    }
                    let ids: Vec<String> = messages.iter().map(MessageId::to_string).collect();
                    let _writer = self.write_lock().await;
                    let mut conn = self.conn().await?;
                    let mut changed = 0;
                    // SQLite binds a list as one parameter per id, and allows
                    // 32,766: a whole conversation read at once goes in parts.
                    for part in ids.chunks(1_000) {
                        // The user's unread ones are a range of the (tenant,
                        // user, rank, …) index; the ids filter that range.
                        changed += $crate::__private::diesel::update(
                            notifications::table
                                .filter(notifications::tenant_id.eq(tenant.as_str()))
                                .filter(notifications::user_id.eq(user.as_str()))
                                .filter(
                                    notifications::status_rank
                                        .eq(status_rank(NotificationStatus::Unread)),
                                )
                                .filter(notifications::kind.eq(NotificationKind::Message.as_str()))
                                .filter(notifications::related_entity_type.eq("message"))
                                .filter(notifications::related_entity_id.eq_any(part)),
                        )
                        .set(notifications::status_rank.eq(status_rank(NotificationStatus::Read)))
                        .execute(&mut conn)
                        .await
                        .map_err(|e| db_error("marking message notifications read", e))?;
                    }
                    Ok(changed as u64)
                }
            }

            #[$crate::__private::async_trait]
            impl AuditLog for $name {
                async fn append(&self, entry: AuditEntry) -> StoreResult<()> {
                    let row = AuditRow::from(&entry);
                    // The hot paths take the write lock themselves.
                    match audit_row(self, row).await {
                        Ok(_) => Ok(()),
                        Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict(
                            "an audit row with this id already exists".into(),
                        )),
                        Err(err) => Err(err.into_store("appending an audit row")),
                    }
                }

                async fn query(
                    &self,
                    tenant: &TenantId,
                    filter: AuditFilter,
                    limit: PageSize,
                ) -> StoreResult<Vec<AuditEntry>> {
                    let mut query = messaging_audit_log::table
                        .filter(messaging_audit_log::tenant_id.eq(tenant.as_str().to_owned()))
                        .order((
                            messaging_audit_log::created_at.desc(),
                            messaging_audit_log::id.desc(),
                        ))
                        .limit(limit_of(limit))
                        .select(AuditRow::as_select())
                        .into_boxed::<Db>();
                    if let Some(action) = filter.action {
                        query = query.filter(messaging_audit_log::action.eq(action.as_str()));
                    }
                    if let Some(user) = filter.user_id {
                        query = query.filter(messaging_audit_log::user_id.eq(user.as_str().to_owned()));
                    }
                    if let Some(since) = filter.since {
                        query = query.filter(messaging_audit_log::created_at.ge(to_db(since)));
                    }
                    if let Some(before) = filter.before {
                        let at = to_db(before.created_at);
                        query = query.filter(
                            messaging_audit_log::created_at.lt(at).or(messaging_audit_log::created_at
                                .eq(at)
                                .and(messaging_audit_log::id.lt(before.id.to_string()))),
                        );
                    }
                    let mut conn = self.conn().await?;
                    let rows = query
                        .load(&mut conn)
                        .await
                        .map_err(|e| db_error("querying the audit log", e))?;
                    convert_all(rows)
                }

                async fn purge_before(
                    &self,
                    receipt: &PurgeReceipt,
                ) -> StoreResult<Vec<(TenantId, u64)>> {
                    use messaging_audit_log::{created_at, tenant_id};
                    let cutoff = to_db(receipt.cutoff);
                    let _writer = self.write_lock().await;
                    let mut pooled = self.conn().await?;
                    let conn: &mut $conn = &mut pooled;
                    // Each tenant's rows go by a statement of their own, whose
                    // count of deleted rows is exactly what that tenant lost,
                    // even if another purge runs at the same time (it then
                    // finds those rows gone and counts none). The receipts are
                    // written in the same transaction: a trail never loses
                    // rows without saying so.
                    conn.$tx(async |tx| {
                        // In one order: purges running at once (nodes started
                        // together) then wait on each other instead of deadlocking.
                        let tenants = messaging_audit_log::table
                            .filter(created_at.lt(cutoff))
                            .select(tenant_id)
                            .distinct()
                            .order(tenant_id)
                            .load::<String>(tx)
                            .await?;
                        let mut purged = Vec::with_capacity(tenants.len());
                        for tenant in tenants {
                            let removed = $crate::__private::diesel::delete(
                                messaging_audit_log::table
                                    .filter(tenant_id.eq(&tenant))
                                    .filter(created_at.lt(cutoff)),
                            )
                            .execute(tx)
                            .await?;
                            if removed > 0 {
                                let tenant = TenantId::parse(tenant.as_str()).map_err(|e| {
                                    $crate::error::corrupt("audit row's tenant id", e)
                                })?;
                                purged.push((tenant, u64::try_from(removed).unwrap_or(u64::MAX)));
                            }
                        }
                        // Byte order, whatever the database's collation.
                        purged.sort();
                        for (position, (tenant, rows)) in (0u32..).zip(&purged) {
                            let row = AuditRow::from(&receipt.entry(position, tenant, *rows));
                            $crate::__private::diesel::insert_into(messaging_audit_log::table)
                                .values(&row)
                                .execute(tx)
                                .await?;
                        }
                        Ok::<_, TxError>(purged)
                    })
                    .await
                    .map_err(|err| {
                        if is_unique_violation(&err) {
                            StoreError::Conflict("a purge receipt's id is already taken".into())
                        } else {
                            err.into_store("purging the audit log")
                        }
                    })
                }
            }

            #[$crate::__private::async_trait]
            impl Directory for $name {
                async fn user(
                    &self,
                    tenant: &TenantId,
                    user: &UserId,
                ) -> StoreResult<Option<DirectoryUser>> {
                    let mut conn = self.conn().await?;
                    let row = directory_users::table
                        .filter(directory_users::tenant_id.eq(tenant.as_str()))
                        .filter(directory_users::user_id.eq(user.as_str()))
                        .select(DirectoryUserRow::as_select())
                        .first(&mut conn)
                        .await
                        .optional()
                        .map_err(|e| db_error("reading a directory user", e))?;
                    row.map(DirectoryUser::try_from).transpose()
                }

                async fn users(
                    &self,
                    tenant: &TenantId,
                    users: &[UserId],
                ) -> StoreResult<Vec<DirectoryUser>> {
                    if users.is_empty() {
                        return Ok(Vec::new());
                    }
                    let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
                    let mut conn = self.conn().await?;
                    let rows = directory_users::table
                        .filter(directory_users::tenant_id.eq(tenant.as_str()))
                        .filter(directory_users::user_id.eq_any(ids))
                        .select(DirectoryUserRow::as_select())
                        .load(&mut conn)
                        .await
                        .map_err(|e| db_error("reading directory users", e))?;
                    convert_all(rows)
                }

                async fn upsert(&self, user: DirectoryUser) -> StoreResult<DirectoryUser> {
                    let row = DirectoryUserRow::new(&user, Utc::now());
                    let _writer = self.write_lock().await;
                    let mut conn = self.conn().await?;
                    let row: DirectoryUserRow =
                        $crate::__private::diesel::insert_into(directory_users::table)
                            .values(&row)
                            .on_conflict((directory_users::tenant_id, directory_users::user_id))
                            .do_update()
                            .set(&row)
                            .returning(DirectoryUserRow::as_returning())
                            // Fixed shape: the row's one `Option` field (the
                            // search key) is always `Some`, so the changeset
                            // always sets every column.
                            .cached()
                            .get_result(&mut conn)
                            .await
                            .map_err(|e| db_error("storing a directory user", e))?;
                    row.try_into()
                }

                async fn record_identity(&self, user: DirectoryUser) -> StoreResult<DirectoryUser> {
                    let row = DirectoryUserRow::new(&user, Utc::now());
                    let _writer = self.write_lock().await;
                    let mut conn = self.conn().await?;
                    let row: DirectoryUserRow =
                        $crate::__private::diesel::insert_into(directory_users::table)
                            .values(&row)
                            .on_conflict((directory_users::tenant_id, directory_users::user_id))
                            .do_update()
                            // Everything but `active`, which stays as stored.
                            .set(DirectoryIdentity::from(&row))
                            .returning(DirectoryUserRow::as_returning())
                            // Fixed shape, as `upsert`.
                            .cached()
                            .get_result(&mut conn)
                            .await
                            .map_err(|e| db_error("recording a user's identity", e))?;
                    row.try_into()
                }

                async fn search(
                    &self,
                    tenant: &TenantId,
                    query: &DirectoryQuery,
                ) -> StoreResult<Vec<DirectoryUser>> {
                    use directory_users::{active, search_key, tenant_id, user_id};
                    let mut select = directory_users::table
                        .filter(tenant_id.eq(tenant.as_str()))
                        .filter(search_key.is_not_null())
                        .into_boxed::<Db>();
                    if !query.include_inactive {
                        select = select.filter(active.eq(true));
                    }
                    if let Some(text) = &query.text {
                        select = select.filter(search_key.like(like_pattern(text)).escape('\\'));
                    }
                    if let Some(after) = &query.after {
                        let key = after.key.as_str();
                        // The first condition alone is a range of the index, so a
                        // late page starts there instead of at the tenant's first row.
                        select = select.filter(search_key.ge(key)).filter(
                            search_key
                                .gt(key)
                                .or(user_id.gt(after.user_id.as_str())),
                        );
                    }
                    let mut conn = self.conn().await?;
                    let rows = select
                        .order((search_key.asc(), user_id.asc()))
                        .limit(limit_of(query.limit))
                        .select(DirectoryUserRow::as_select())
                        .load(&mut conn)
                        .await
                        .map_err(|e| db_error("searching the directory", e))?;
                    convert_all(rows)
                }
            }

            impl $name {
                /// Fills the search key of directory rows written before it
                /// existed (the migrations cannot fold names: that is Rust's
                /// job). Returns how many rows it filled; 0 once done.
                pub async fn fill_search_keys(&self) -> StoreResult<u64> {
                    use directory_users::{display_name, search_key, tenant_id, user_id};
                    let mut filled = 0;
                    loop {
                        let _writer = self.write_lock().await;
                        let mut pooled = self.conn().await?;
                        let conn: &mut $conn = &mut pooled;
                        let (read, updated) = conn
                            .$tx(async |tx| {
                                let rows: Vec<(String, String, String)> = directory_users::table
                                    .filter(search_key.is_null())
                                    .select((tenant_id, user_id, display_name))
                                    // One order on every node: two nodes filling at
                                    // once queue on the same first row instead of
                                    // deadlocking on two.
                                    .order((tenant_id.asc(), user_id.asc()))
                                    .limit(500)
                                    .load(tx)
                                    .await?;
                                let mut updated = 0;
                                for (tenant, user, name) in &rows {
                                    // Always Some, even for a name that folds to
                                    // nothing, so the loop ends. Only if the row
                                    // still has that name and no key: a node that
                                    // renamed it meanwhile wrote the right key.
                                    let key =
                                        $crate::__private::afritalk_ports::fold_for_search(name);
                                    updated += $crate::__private::diesel::update(
                                        directory_users::table
                                            .filter(tenant_id.eq(tenant))
                                            .filter(user_id.eq(user))
                                            .filter(display_name.eq(name))
                                            .filter(search_key.is_null()),
                                    )
                                    .set(search_key.eq(Some(key)))
                                    .execute(tx)
                                    .await? as u64;
                                }
                                Ok::<_, TxError>((rows.len(), updated))
                            })
                            .await
                            .map_err(|e| e.into_store("folding directory names"))?;
                        if read == 0 {
                            return Ok(filled);
                        }
                        filled += updated;
                    }
                }
            }

            #[$crate::__private::async_trait]
            impl FeatureFlags for $name {
                async fn messaging_enabled(&self, tenant: &TenantId) -> StoreResult<bool> {
                    let mut conn = self.conn().await?;
                    let enabled: Option<bool> = tenant_settings::table
                        .filter(tenant_settings::tenant_id.eq(tenant.as_str()))
                        .select(tenant_settings::messaging_enabled)
                        .first(&mut conn)
                        .await
                        .optional()
                        .map_err(|e| db_error("reading a feature flag", e))?;
                    Ok(enabled.unwrap_or(self.messaging_default))
                }

                async fn set_messaging_enabled(
                    &self,
                    tenant: &TenantId,
                    enabled: bool,
                ) -> StoreResult<()> {
                    let row = TenantSettingRow {
                        tenant_id: tenant.as_str().to_owned(),
                        messaging_enabled: enabled,
                        updated_at: to_db(Utc::now()),
                    };
                    let _writer = self.write_lock().await;
                    let mut conn = self.conn().await?;
                    $crate::__private::diesel::insert_into(tenant_settings::table)
                        .values(&row)
                        .on_conflict(tenant_settings::tenant_id)
                        .do_update()
                        .set((
                            tenant_settings::messaging_enabled.eq(enabled),
                            tenant_settings::updated_at.eq(row.updated_at),
                        ))
                        // Fixed shape: the same SET columns every call.
                        .cached()
                        .execute(&mut conn)
                        .await
                        .map_err(|e| db_error("setting a feature flag", e))?;
                    Ok(())
                }
            }
        };
    };
}
