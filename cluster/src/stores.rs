//! The object stores of a cluster process: made on first use from the URL a
//! plan names, with this process's own credentials.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use agentledger_lake::Lake;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::ObjectStore;
use url::Url;

/// An object-store registry that opens the store a plan names (`s3://BUCKET`,
/// `gs://...`, `az://...`, `file:///`) as `agentledger` opens a lake there:
/// from the same environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
/// A plan carries the store's URL and the files' paths, never a
/// credential.
#[derive(Debug, Default)]
pub struct LakeStores {
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

/// The registry's key: scheme and authority, as DataFusion names a store.
fn key(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    )
}

impl ObjectStoreRegistry for LakeStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        stores.insert(key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        stores.remove(&key(url)).ok_or_else(|| {
            DataFusionError::Execution(format!("no object store is registered for {url}"))
        })
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = key(url);
        if let Some(store) = self
            .stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Arc::clone(store));
        }
        if url.scheme() == "memory" {
            return Err(DataFusionError::Execution(format!(
                "{key} is a lake in another process's memory; a cluster reads lakes on disk or in object storage"
            )));
        }
        // The store's root: a local lake opens `/`, which exists.
        let lake = Lake::open_existing(&key).map_err(|e| {
            DataFusionError::Execution(format!("cannot open the object store {key}: {e}"))
        })?;
        let store = Arc::clone(lake.store());
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        Ok(Arc::clone(stores.entry(key).or_insert(store)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::path::Path;

    #[tokio::test]
    async fn a_local_store_is_opened_on_first_use_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"hello").unwrap();
        let stores = LakeStores::default();
        let url = Url::parse("file:///").unwrap();
        let store = stores.get_store(&url).unwrap();
        let got = store
            .get(&Path::from_absolute_path(&file).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], b"hello");
        assert!(Arc::ptr_eq(&store, &stores.get_store(&url).unwrap()));
        // The same store under a URL with a path.
        let deeper = Url::parse("file:///tmp/x").unwrap();
        assert!(Arc::ptr_eq(&store, &stores.get_store(&deeper).unwrap()));
    }

    #[test]
    fn a_memory_store_is_refused_with_its_name() {
        let stores = LakeStores::default();
        let err = stores
            .get_store(&Url::parse("memory://lake1").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("memory://lake1"), "{err}");
    }

    #[test]
    fn the_key_is_scheme_and_authority() {
        let url = Url::parse("s3://bucket/prefix/x").unwrap();
        assert_eq!(key(&url), "s3://bucket");
        let url = Url::parse("http://host:9000/x").unwrap();
        assert_eq!(key(&url), "http://host:9000");
    }
}
