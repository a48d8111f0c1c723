//! How agentledger's plans travel to a Ballista cluster.
//!
//! Ballista sends the client's logical plan to the scheduler and the
//! scheduler's physical plans to executors, as protobuf, through DataFusion's
//! codecs. Standard nodes (Parquet scans over file groups, joins,
//! aggregates...) need nothing from us; these codecs add what is ours:
//!
//! - [`LakeLogicalCodec`]: a [`LakeTable`] scan, written as its
//!   [`LakeTableParts`] (the snapshot's exact file list, the store's URL,
//!   the scope): the scheduler plans over the same committed snapshot as the
//!   client, not over whatever the folder holds by then.
//! - a [`Fragment`] of a deep plan, as a message of its own (see
//!   [`crate::fragment`]).
//! - [`LakePhysicalCodec`]: agentledger's pass-through nodes, the tenant
//!   scope's barrier and the nested-loop join guard, written by name.
//!
//! Everything else is handed to Ballista's own codecs. Functions
//! (`div_money`...) travel by name and are found in the receiving process's
//! registry, which [`crate::cluster_state`] fills.

use std::sync::Arc;

use agentledger_transforms::join_guard::{ExecuteOnce, ExecuteOnceExec};
use agentledger_transforms::passthrough::{PassThrough, PassThroughExec};
use agentledger_transforms::scope::{Barrier, ScopeBarrierExec};
use agentledger_transforms::{LakeTable, LakeTableParts};
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::{AsLogicalPlan, LogicalExtensionCodec};
use datafusion_proto::protobuf::LogicalPlanNode;
use prost::Message;

use crate::fragment::Fragment;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

/// The first bytes of every buffer these codecs write, so that decoding
/// tells ours from Ballista's.
const MAGIC: &[u8] = b"agentledger/1:";

/// `buf` without [`MAGIC`], when it starts with it.
fn ours(buf: &[u8]) -> Option<&[u8]> {
    buf.strip_prefix(MAGIC)
}

/// Ballista's logical codec, and [`LakeTable`] scans.
#[derive(Debug, Default)]
pub struct LakeLogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LakeLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        let Some(piece) = ours(buf).and_then(|b| b.strip_prefix(Fragment::NAME.as_bytes())) else {
            return self.ballista.try_decode(buf, inputs, ctx);
        };
        // A message of its own: decoded under prost's nesting limit afresh.
        let plan = LogicalPlanNode::decode(piece)
            .map_err(|e| {
                DataFusionError::Internal(format!("a piece of the plan arrived unreadable: {e}"))
            })?
            .try_into_logical_plan(ctx, self)?;
        Ok(Extension {
            node: Arc::new(Fragment { plan }),
        })
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        let Some(fragment) = node.node.as_any().downcast_ref::<Fragment>() else {
            return self.ballista.try_encode(node, buf);
        };
        let piece = LogicalPlanNode::try_from_logical_plan(&fragment.plan, self)?;
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(Fragment::NAME.as_bytes());
        piece.encode(buf).map_err(|e| {
            DataFusionError::Internal(format!("cannot write a piece of the plan: {e}"))
        })
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let Some(json) = ours(buf) else {
            return self
                .ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let parts: LakeTableParts = serde_json::from_slice(json).map_err(|e| {
            DataFusionError::Internal(format!(
                "the scan of {table_ref} arrived unreadable (is every process of the cluster the same agentledger version?): {e}"
            ))
        })?;
        let table = LakeTable::from_parts(&parts)?;
        if table.schema() != schema {
            return Err(DataFusionError::Internal(format!(
                "the scan of {table_ref} arrived with the columns {schema}, and this build of agentledger stores {}; is every process of the cluster the same agentledger version?",
                table.schema()
            )));
        }
        Ok(Arc::new(table))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(table) = node.downcast_ref::<LakeTable>() else {
            return self
                .ballista
                .try_encode_table_provider(table_ref, node, buf);
        };
        buf.extend_from_slice(MAGIC);
        serde_json::to_writer(buf, &table.to_parts()).map_err(|e| {
            DataFusionError::Internal(format!("cannot write the scan of {table_ref}: {e}"))
        })
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.ballista.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.ballista.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.ballista.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udwf(node, buf)
    }
}

/// Ballista's physical codec, and agentledger's pass-through nodes.
#[derive(Debug, Default)]
pub struct LakePhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

/// `P`'s node over `inputs`' one plan.
fn pass_through<P: PassThrough>(
    inputs: &[Arc<dyn ExecutionPlan>],
) -> Result<Arc<dyn ExecutionPlan>> {
    match inputs {
        [input] => Ok(Arc::new(PassThroughExec::<P>::new(Arc::clone(input)))),
        _ => Err(DataFusionError::Internal(format!(
            "{} arrived with {} inputs, not one",
            P::NAME,
            inputs.len()
        ))),
    }
}

impl PhysicalExtensionCodec for LakePhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match ours(buf) {
            None => self.ballista.try_decode(buf, inputs, ctx, proto_converter),
            Some(name) if name == Barrier::NAME.as_bytes() => pass_through::<Barrier>(inputs),
            Some(name) if name == ExecuteOnce::NAME.as_bytes() => {
                pass_through::<ExecuteOnce>(inputs)
            }
            Some(name) => Err(DataFusionError::Internal(format!(
                "a plan node named {:?} arrived, which this build of agentledger does not know; is every process of the cluster the same agentledger version?",
                String::from_utf8_lossy(name)
            ))),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let name = if node.downcast_ref::<ScopeBarrierExec>().is_some() {
            Barrier::NAME
        } else if node.downcast_ref::<ExecuteOnceExec>().is_some() {
            ExecuteOnce::NAME
        } else {
            return self.ballista.try_encode(node, buf, proto_converter);
        };
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(name.as_bytes());
        Ok(())
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.ballista.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.ballista.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.ballista.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udwf(node, buf)
    }
}
