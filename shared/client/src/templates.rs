//! The blocks and variables a job template refers to, fetched before rendering (the renderer in
//! `sluice-core` is pure and cannot look anything up itself).

use sluice_core::job_config::DataReferences;
use sluice_core::templating::{BlockRef, PrefetchedData};

use crate::{Client, ClientError};

impl Client {
    /// Fetches every block document and variable in `refs`. Missing ones are left out, so the
    /// renderer reports them (or drops them) by its own rules.
    pub async fn template_data(
        &self,
        refs: &DataReferences,
    ) -> Result<PrefetchedData, ClientError> {
        let mut data = PrefetchedData::default();
        for block in &refs.blocks {
            data = match block {
                BlockRef::ById(id) => match self.block_by_id(id).await? {
                    Some(doc) => data.with_block_id(id.clone(), doc),
                    None => data,
                },
                BlockRef::ByName { slug, name } => match self.block_by_name(slug, name).await? {
                    Some(doc) => data.with_block(slug.clone(), name.clone(), doc),
                    None => data,
                },
            };
        }
        for name in &refs.variables {
            if let Some(value) = self.variable(name).await? {
                data = data.with_variable(name.clone(), value);
            }
        }
        Ok(data)
    }
}
