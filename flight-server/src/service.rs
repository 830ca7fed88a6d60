//! `FlightSqlService` for the lake: every call authenticates, asks the engine's access
//! policy and query service, and streams results. Metadata lives in `metadata.rs`, result
//! encoding in `results.rs`.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    Ticket,
};
use assay_engine::auth::Principal;
use assay_engine::service::LakeService;
use assay_engine::session::CATALOG;
use datafusion::common::ParamValues;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::auth;
use crate::error::{internal, status};
use crate::metadata::{self, TABLE_TYPE};
use crate::prepared::{Prepared, Purpose, ipc_schema};
use crate::results::{FlightStream, client_schema, encode, encode_batch};

/// The Flight SQL service over the lake: a thin adapter over the serving core.
#[derive(Clone)]
pub struct AssayFlightSql {
    core: Arc<dyn LakeService>,
    keep_views: bool,
    sql_info: Arc<SqlInfoData>,
    xdbc_info: Arc<XdbcTypeInfoData>,
}

impl std::fmt::Debug for AssayFlightSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssayFlightSql")
            .field("keep_views", &self.keep_views)
            .finish_non_exhaustive()
    }
}

impl AssayFlightSql {
    /// A service over the serving core. With `keep_views`, `Utf8View`/`BinaryView` columns
    /// are sent as they are instead of as `Utf8`/`Binary`.
    ///
    /// # Errors
    /// Building the static server metadata failed (a bug).
    pub fn new(core: Arc<dyn LakeService>, keep_views: bool) -> Result<Self, Status> {
        Ok(AssayFlightSql {
            core,
            keep_views,
            sql_info: Arc::new(metadata::sql_info()?),
            xdbc_info: Arc::new(metadata::xdbc_info()?),
        })
    }

    /// The caller, from the request's bearer token (read before the first await, so the
    /// future does not hold the request).
    fn principal<T>(
        &self,
        request: &Request<T>,
    ) -> impl std::future::Future<Output = Result<Principal, Status>> + Send + use<'_, T> {
        let token = auth::bearer(request.metadata());
        async move { self.core.principal(&token?).await.map_err(status) }
    }

    fn info(
        &self,
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        Ok(FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| internal("encoding a schema", e))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor))
    }

    /// FlightInfo for a metadata command: authenticate, then point back at the command.
    async fn command_info(
        &self,
        request: Request<FlightDescriptor>,
        ticket: Vec<u8>,
        schema: &Schema,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        Ok(Response::new(self.info(
            schema,
            ticket,
            request.into_inner(),
        )?))
    }

    /// An empty result of `schema` (the key commands: lake tables declare no keys).
    async fn empty_result(
        &self,
        request: &Request<Ticket>,
        schema: arrow::datatypes::SchemaRef,
    ) -> Result<Response<FlightStream>, Status> {
        self.principal(request).await?;
        Ok(Response::new(encode_batch(metadata::empty(schema))))
    }

    /// The prepared statement behind a handle the caller holds.
    fn prepared(&self, handle: &[u8], principal: &Principal) -> Result<Prepared, Status> {
        Prepared::open(self.core.sealer(), Purpose::Prepared, handle, principal)
    }

    async fn run(
        &self,
        principal: &Principal,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<FlightStream, Status> {
        let planned = self
            .core
            .plan(principal, sql, params)
            .await
            .map_err(status)?;
        let stream = self
            .core
            .execute(principal, planned)
            .await
            .map_err(status)?;
        Ok(encode(stream, self.keep_views))
    }

    async fn result_schema(
        &self,
        principal: &Principal,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<Arc<Schema>, Status> {
        let planned = self
            .core
            .plan(principal, sql, params)
            .await
            .map_err(status)?;
        Ok(client_schema(&planned.schema(), self.keep_views))
    }
}

#[tonic::async_trait]
impl FlightSqlService for AssayFlightSql {
    type FlightService = AssayFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let (user, password) = auth::basic(request.metadata())?;
        let client = request.remote_addr().map(|a| a.ip());
        let login = self
            .core
            .login(&user, &password, client)
            .await
            .map_err(status)?;
        let token = login.token;
        tracing::info!(user = %login.user, "flight handshake");
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let stream = futures::stream::iter(vec![Ok(reply)]);
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(stream));
        let header = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|e| internal("token header", e))?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request).await?;
        let schema = self.result_schema(&principal, &query.query, None).await?;
        // The ticket carries the SQL, signed, so any replica can answer the DoGet.
        let ticket = TicketStatementQuery {
            statement_handle: Prepared::new(query.query, &principal)
                .seal(self.core.sealer(), Purpose::Statement),
        };
        let info = self.info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request).await?;
        let statement = Prepared::open(
            self.core.sealer(),
            Purpose::Statement,
            &ticket.statement_handle,
            &principal,
        )?;
        Ok(Response::new(
            self.run(&principal, &statement.sql, None).await?,
        ))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let principal = self.principal(&request).await?;
        let planned = self
            .core
            .plan(&principal, &query.query, None)
            .await
            .map_err(status)?;
        let dataset = client_schema(&planned.schema(), self.keep_views);
        let mut params: Vec<(usize, Field)> = planned
            .parameters()
            .map_err(status)?
            .into_iter()
            .map(|(name, ty)| {
                let index = name
                    .trim_start_matches('$')
                    .parse::<usize>()
                    .unwrap_or(usize::MAX);
                (index, Field::new(name, ty.unwrap_or(DataType::Utf8), true))
            })
            .collect();
        params.sort_by_key(|(i, _)| *i);
        let parameter_schema = client_schema(
            &Schema::new(params.into_iter().map(|(_, f)| f).collect::<Vec<_>>()),
            self.keep_views,
        );
        let handle =
            Prepared::new(query.query, &principal).seal(self.core.sealer(), Purpose::Prepared);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema: ipc_schema(&dataset)?,
            parameter_schema: ipc_schema(&parameter_schema)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let principal = self.principal(&request).await?;
        let prepared = self.prepared(&query.prepared_statement_handle, &principal)?;
        let data = request
            .into_inner()
            .map_err(arrow_flight::error::FlightError::from);
        // Parameters are one row: the stream is read batch by batch up to a bound, never
        // collected whole.
        const MAX_PARAM_BYTES: usize = 1 << 20;
        let mut stream = FlightRecordBatchStream::new_from_flight_data(data);
        let (mut first, mut bytes): (Option<RecordBatch>, usize) = (None, 0);
        while let Some(batch) = stream
            .try_next()
            .await
            .map_err(|e| Status::invalid_argument(format!("bad parameter data: {e}")))?
        {
            bytes += batch.get_array_memory_size();
            if bytes > MAX_PARAM_BYTES {
                return Err(Status::invalid_argument(
                    "parameter data over 1 MiB: bind one row of parameters",
                ));
            }
            if first.is_none() && batch.num_rows() > 0 {
                first = Some(batch);
            }
        }
        // The bound parameters travel in a new handle the client uses from now on.
        let bound = prepared.bind(first.as_ref())?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(bound.seal(self.core.sealer(), Purpose::Prepared)),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request).await?;
        let prepared = self.prepared(&cmd.prepared_statement_handle, &principal)?;
        let schema = self
            .result_schema(&principal, &prepared.sql, prepared.params()?)
            .await?;
        let info = self.info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())?;
        Ok(Response::new(info))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request).await?;
        let prepared = self.prepared(&query.prepared_statement_handle, &principal)?;
        Ok(Response::new(
            self.run(&principal, &prepared.sql, prepared.params()?)
                .await?,
        ))
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let principal = self.principal(&request).await?;
        // Nothing to free: the handle holds the statement. Checked, so a forged or foreign
        // handle is still refused.
        self.prepared(&query.prepared_statement_handle, &principal)?;
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.command_info(request, query.as_any().encode_to_vec(), &schema)
            .await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        let batch = builder.build().map_err(|e| internal("catalogs", e))?;
        Ok(Response::new(encode_batch(batch)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.command_info(request, query.as_any().encode_to_vec(), &schema)
            .await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request).await?;
        let mut builder = query.into_builder();
        for layer in self.core.layers(&principal) {
            builder.append(CATALOG, layer.as_str());
        }
        let batch = builder.build().map_err(|e| internal("schemas", e))?;
        Ok(Response::new(encode_batch(batch)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.command_info(request, query.as_any().encode_to_vec(), &schema)
            .await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request).await?;
        let mut builder = query.into_builder();
        let with_schema = builder.include_schema();
        let tables = self
            .core
            .table_versions(&principal, &[])
            .await
            .map_err(status)?;
        for (id, _) in tables {
            let schema = if with_schema {
                match self.core.schema(&principal, &id).await {
                    Ok(s) => client_schema(&s, self.keep_views),
                    // Dropped between listing and opening: leave it out.
                    Err(e) if e.kind() == assay_engine::ErrorKind::NotFound => continue,
                    Err(e) => return Err(status(e)),
                }
            } else {
                Arc::new(Schema::empty())
            };
            builder
                .append(CATALOG, id.layer.as_str(), &id.name, TABLE_TYPE, &schema)
                .map_err(|e| internal("tables", e))?;
        }
        let batch = builder.build().map_err(|e| internal("tables", e))?;
        Ok(Response::new(encode_batch(batch)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.command_info(request, query.as_any().encode_to_vec(), &schema)
            .await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let mut builder = query.into_builder();
        builder.append(TABLE_TYPE);
        let batch = builder.build().map_err(|e| internal("table types", e))?;
        Ok(Response::new(encode_batch(batch)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.command_info(request, query.as_any().encode_to_vec(), &schema)
            .await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let batch = query
            .into_builder(&self.sql_info)
            .build()
            .map_err(|e| internal("SQL info", e))?;
        Ok(Response::new(encode_batch(batch)))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&self.xdbc_info).schema();
        self.command_info(request, query.as_any().encode_to_vec(), &schema)
            .await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let batch = query
            .into_builder(&self.xdbc_info)
            .build()
            .map_err(|e| internal("XDBC type info", e))?;
        Ok(Response::new(encode_batch(batch)))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::primary_keys_schema();
        self.command_info(request, query.as_any().encode_to_vec(), &schema)
            .await
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.empty_result(&request, metadata::primary_keys_schema())
            .await
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::foreign_keys_schema();
        self.command_info(request, query.as_any().encode_to_vec(), &schema)
            .await
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.empty_result(&request, metadata::foreign_keys_schema())
            .await
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::foreign_keys_schema();
        self.command_info(request, query.as_any().encode_to_vec(), &schema)
            .await
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.empty_result(&request, metadata::foreign_keys_schema())
            .await
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::foreign_keys_schema();
        self.command_info(request, query.as_any().encode_to_vec(), &schema)
            .await
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.empty_result(&request, metadata::foreign_keys_schema())
            .await
    }

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        Err(Status::unimplemented(format!(
            "unsupported ticket type {}",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
