//! Reading committed Parquet files outside DataFusion.
//!
//! Writers need a few columns of what is already stored (the event-id index,
//! the quarantine keys) before they can decide what to store; this reads just
//! those columns, file by file, with ranged reads, so memory holds one batch
//! at a time.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt, TryFutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::error::Result;
use crate::log::FileEntry;
use crate::store::Lake;

/// An [`AsyncFileReader`] over one object of known size.
#[derive(Debug, Clone)]
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(external)
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Streams the named columns of one committed file.
pub async fn read_columns(
    lake: &Lake,
    file: &FileEntry,
    columns: &[&str],
) -> Result<impl Stream<Item = Result<RecordBatch>> + use<>> {
    stream(lake, file, Some(columns)).await
}

/// Streams every column of one committed file.
pub async fn read_all(
    lake: &Lake,
    file: &FileEntry,
) -> Result<impl Stream<Item = Result<RecordBatch>> + use<>> {
    stream(lake, file, None).await
}

async fn stream(
    lake: &Lake,
    file: &FileEntry,
    columns: Option<&[&str]>,
) -> Result<impl Stream<Item = Result<RecordBatch>> + use<>> {
    let reader = ObjectReader {
        store: Arc::clone(lake.store()),
        path: lake.path(&file.path),
        size: file.size,
    };
    let mut builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    if let Some(columns) = columns {
        let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
        builder = builder.with_projection(mask);
    }
    let stream = builder.with_batch_size(64 * 1024).build()?;
    Ok(stream.map_err(Into::into).boxed())
}

/// The footer of one committed file (schema, row groups and their column
/// statistics), without its page indexes: one ranged read of its tail.
pub async fn read_metadata(lake: &Lake, file: &FileEntry) -> Result<ParquetMetaData> {
    let mut reader = ObjectReader {
        store: Arc::clone(lake.store()),
        path: lake.path(&file.path),
        size: file.size,
    };
    Ok(ParquetMetaDataReader::new()
        .with_prefetch_hint(Some(64 * 1024))
        .load_and_finish(&mut reader, file.size)
        .await?)
}
