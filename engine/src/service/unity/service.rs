//! The Unity Catalog part of the serving core: what the `/api/2.1/unity-catalog` routes call,
//! implemented by [`Core`] over [`View`].

use async_trait::async_trait;

use super::super::{Core, Result};
use super::{
    Catalog, Credentials, Operation, Page, PageRequest, Schema, Table, TableSummary, View, vend,
};
use crate::auth::{Action, Principal, authorize};

/// The lake as a Unity Catalog. Every method authorizes the caller first.
#[async_trait]
pub trait UnityCatalog: Send + Sync {
    /// the catalogs (one: the project).
    async fn uc_catalogs(&self, p: &Principal) -> Result<Vec<Catalog>>;
    /// one catalog.
    async fn uc_catalog(&self, p: &Principal, name: &str) -> Result<Catalog>;
    /// the schemas (layers) of a catalog the caller sees.
    async fn uc_schemas(&self, p: &Principal, catalog: &str) -> Result<Vec<Schema>>;
    /// one schema by full name.
    async fn uc_schema(&self, p: &Principal, full_name: &str) -> Result<Schema>;
    /// a page of a schema's tables.
    async fn uc_tables(
        &self,
        p: &Principal,
        catalog: &str,
        schema: &str,
        page: &PageRequest,
    ) -> Result<Page<Table>>;
    /// one table by full name.
    async fn uc_table(&self, p: &Principal, full_name: &str) -> Result<Table>;
    /// a page of table names across the caller's schemas.
    async fn uc_table_summaries(
        &self,
        p: &Principal,
        catalog: &str,
        schema_pattern: Option<&str>,
        table_pattern: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<TableSummary>>;
    /// short-lived credentials for a table's files.
    async fn uc_credentials(
        &self,
        p: &Principal,
        table_id: &str,
        op: Operation,
    ) -> Result<Credentials>;
}

impl Core {
    fn uc_view<'a>(&'a self, p: &'a Principal) -> View<'a> {
        View {
            lake: self.lake(),
            versions: &self.versions,
            config: &self.unity,
            principal: p,
        }
    }
}

#[async_trait]
impl UnityCatalog for Core {
    async fn uc_catalogs(&self, p: &Principal) -> Result<Vec<Catalog>> {
        Ok(vec![self.uc_view(p).catalog()])
    }

    async fn uc_catalog(&self, p: &Principal, name: &str) -> Result<Catalog> {
        let view = self.uc_view(p);
        view.check_catalog(name)?;
        Ok(view.catalog())
    }

    async fn uc_schemas(&self, p: &Principal, catalog: &str) -> Result<Vec<Schema>> {
        self.uc_view(p).schemas(catalog)
    }

    async fn uc_schema(&self, p: &Principal, full_name: &str) -> Result<Schema> {
        self.uc_view(p).schema(full_name)
    }

    async fn uc_tables(
        &self,
        p: &Principal,
        catalog: &str,
        schema: &str,
        page: &PageRequest,
    ) -> Result<Page<Table>> {
        self.uc_view(p).tables(catalog, schema, page).await
    }

    async fn uc_table(&self, p: &Principal, full_name: &str) -> Result<Table> {
        self.uc_view(p).table(full_name).await
    }

    async fn uc_table_summaries(
        &self,
        p: &Principal,
        catalog: &str,
        schema_pattern: Option<&str>,
        table_pattern: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<TableSummary>> {
        self.uc_view(p)
            .summaries(catalog, schema_pattern, table_pattern, page)
            .await
    }

    async fn uc_credentials(
        &self,
        p: &Principal,
        table_id: &str,
        op: Operation,
    ) -> Result<Credentials> {
        let (id, _) = self.uc_view(p).by_id(table_id).await?;
        if op == Operation::ReadWrite {
            authorize(p, Action::WriteRows(&id)).map_err(|e| e.with_reason("PERMISSION_DENIED"))?;
        }
        vend::vend(self.lake(), &id, op, &p.name, &self.unity.vend).await
    }
}
