"""The contract's preprocessing (ml/features.py `preprocessor`) as a lean ONNX graph.

Why: batch scoring runs this graph on every row, and skl2onnx's generic conversion of the
ColumnTransformer imputes a missing category on strings (ArrayFeatureExtractor, Where, Split
and Concat each copy every string) and joins the columns twice. Profiled on 1 M example rows
(bench/batch/profile_graph.py, loaded machine), those four took 0.64 s of the 0.78 s its nodes
took; this graph's nodes take 0.20 s, and session.run is 2.4x as fast (bench/README.md).

Here each categorical column goes straight from its string to its one-hot row in two cheap
steps: a LabelEncoder maps the text to the position of its category (a missing value, "", to
the imputer's fill value's position, an unknown value to an all-zero row), and a Gather picks
that row of an identity matrix. Numeric columns are joined once, then imputed and scaled as
skl2onnx does (the same Imputer and Scaler operators, the same float32 constants). All blocks
meet in one Concat, in the order scikit-learn's ColumnTransformer lays out its output columns,
and feed the estimator, which skl2onnx converts alone as usual.

Only the exact shape `preprocessor` builds is written this way (`plan` checks every step and
setting it relies on); any other preprocessing (your own feature engineering) returns None and
is converted by skl2onnx. Either way the parity gate compares the result with scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from governance.core.contract import Contract
from governance.core.errors import CheckFailed

FEATURES = "features"  # the estimator's input: the preprocessed [N, width] float tensor
PREFIX = "contract_"  # every name this module adds to the graph starts so (checked against clashes)
ML_DOMAIN = "ai.onnx.ml"
MIN_OPSETS = {"": 5, ML_DOMAIN: 2}  # Reshape with a shape input; LabelEncoder's keys/values attributes


class GraphError(CheckFailed):
    """The estimator's converted graph cannot be joined to the preprocessing graph."""


@dataclass(frozen=True)
class NumericBlock:
    """Numeric columns: impute each with its fitted value, then (x - offset) * scale."""

    columns: tuple[str, ...]
    imputed: tuple[float, ...]
    offset: tuple[float, ...] | None
    scale: tuple[float, ...] | None


@dataclass(frozen=True)
class CategoricalBlock:
    """Categorical columns: per column, each text's position in its one-hot row (unknown: none)."""

    columns: tuple[str, ...]
    positions: tuple[dict[str, int], ...]
    widths: tuple[int, ...]


Block = NumericBlock | CategoricalBlock


@dataclass(frozen=True)
class Plan:
    """The fitted preprocessing, read into the numbers the graph needs, in output column order."""

    blocks: tuple[Block, ...]

    @property
    def width(self) -> int:
        return sum(
            len(block.columns) if isinstance(block, NumericBlock) else sum(block.widths)
            for block in self.blocks
        )


def plan(preprocessing: object, contract: Contract) -> Plan | None:
    """The fitted ColumnTransformer as a Plan, or None when it is not the shape `preprocessor` builds."""
    if type(preprocessing) is not ColumnTransformer or preprocessing.transformer_weights is not None:
        return None
    if preprocessing.remainder != "drop":
        return None
    kinds = {feature.name: feature.is_numeric for feature in contract.features}
    blocks: list[Block] = []
    for _, transformer, columns in preprocessing.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        if not isinstance(columns, list) or not columns:
            return None  # columns picked by position, mask or callable: not the contract's names
        if not all(isinstance(name, str) and name in kinds for name in columns):
            return None
        names = tuple(columns)
        if all(kinds[name] for name in names):
            block: Block | None = _numeric(transformer, names)
        elif not any(kinds[name] for name in names):
            block = _categorical(transformer, names)
        else:
            block = None
        if block is None:
            return None
        blocks.append(block)
    return Plan(tuple(blocks)) if blocks else None


def _steps(transformer: object, *types: type) -> list | None:
    """The steps of a Pipeline whose step types are exactly `types` (in order), else None."""
    if type(transformer) is not Pipeline:
        return None
    steps = [step for _, step in transformer.steps]
    if len(steps) != len(types) or any(
        type(step) is not kind for step, kind in zip(steps, types, strict=True)
    ):
        return None
    return steps


def _numeric(transformer: object, columns: tuple[str, ...]) -> NumericBlock | None:
    steps = _steps(transformer, SimpleImputer) or _steps(transformer, SimpleImputer, StandardScaler)
    if steps is None:
        return None
    imputer = steps[0]
    missing = imputer.missing_values
    if not (isinstance(missing, float) and math.isnan(missing)) or imputer.add_indicator:
        return None
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    if statistics.shape != (len(columns),) or not np.all(np.isfinite(statistics)):
        return None  # scikit-learn drops a column it could not impute: the output has another width
    offset = scale = None
    if len(steps) == 2:
        scaler = steps[1]
        width = len(columns)
        # with_mean=False still fits mean_ (for the variance) but does not subtract it
        mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else np.zeros(width)
        spread = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else np.ones(width)
        offset, scale = tuple(mean.tolist()), tuple((1.0 / spread).tolist())  # skl2onnx's own constants
    return NumericBlock(columns, tuple(statistics.tolist()), offset, scale)


def _categorical(transformer: object, columns: tuple[str, ...]) -> CategoricalBlock | None:
    steps = _steps(transformer, SimpleImputer, OneHotEncoder)
    if steps is None:
        return None
    imputer, encoder = steps
    if imputer.strategy != "constant" or imputer.add_indicator or not isinstance(imputer.missing_values, str):
        return None
    if not isinstance(imputer.fill_value, str):
        return None
    if encoder.handle_unknown != "ignore" or encoder.drop is not None or encoder.sparse_output:
        return None
    if encoder.min_frequency is not None or encoder.max_categories is not None:
        return None
    categories = [[str(value) for value in values] for values in encoder.categories_]
    if len(categories) != len(columns) or any(len(set(values)) != len(values) for values in categories):
        return None
    positions = []
    for values in categories:
        position = {value: index for index, value in enumerate(values)}
        # The imputer runs first: a missing value becomes the fill value, wherever that encodes.
        position.pop(imputer.missing_values, None)
        if imputer.fill_value in position:
            position[imputer.missing_values] = position[imputer.fill_value]
        positions.append(position)
    return CategoricalBlock(columns, tuple(positions), tuple(len(values) for values in categories))


def _numeric_nodes(
    block: NumericBlock, index: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    name = f"{PREFIX}numeric{index}"
    nodes = [
        helper.make_node("Concat", list(block.columns), [f"{name}_joined"], axis=1, name=f"{name}_join"),
        helper.make_node(
            "Imputer",
            [f"{name}_joined"],
            [f"{name}_imputed"],
            domain=ML_DOMAIN,
            imputed_value_floats=[float(np.float32(value)) for value in block.imputed],
            replaced_value_float=math.nan,
            name=f"{name}_impute",
        ),
    ]
    last = f"{name}_imputed"
    if block.offset is not None and block.scale is not None:
        nodes.append(
            helper.make_node(
                "Scaler",
                [last],
                [f"{name}_scaled"],
                domain=ML_DOMAIN,
                offset=[float(np.float32(value)) for value in block.offset],
                scale=[float(np.float32(value)) for value in block.scale],
                name=f"{name}_scale",
            )
        )
        last = f"{name}_scaled"
    shape = numpy_helper.from_array(np.array([-1, 1, len(block.columns)], dtype=np.int64), f"{name}_shape")
    nodes.append(helper.make_node("Reshape", [last, shape.name], [f"{name}_rows"], name=f"{name}_rows"))
    return nodes, [shape], f"{name}_rows"


def _categorical_nodes(
    block: CategoricalBlock, index: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], list[str]]:
    nodes, tables, outputs = [], [], []
    for column, position, width in zip(block.columns, block.positions, block.widths, strict=True):
        name = f"{PREFIX}categorical{index}_{column}"
        keys = sorted(position)  # a stable attribute order: the same fit gives the same bytes
        nodes.append(
            helper.make_node(
                "LabelEncoder",
                [column],
                [f"{name}_position"],
                domain=ML_DOMAIN,
                keys_strings=keys,
                values_int64s=[position[key] for key in keys],
                default_int64=width,  # the identity matrix's extra all-zero row: an unknown value
                name=f"{name}_position",
            )
        )
        table = numpy_helper.from_array(np.eye(width + 1, width, dtype=np.float32), f"{name}_onehot_rows")
        tables.append(table)
        # [N, 1] positions pick [N, 1, width] rows
        nodes.append(
            helper.make_node(
                "Gather", [table.name, f"{name}_position"], [f"{name}_onehot"], axis=0, name=f"{name}_onehot"
            )
        )
        outputs.append(f"{name}_onehot")
    return nodes, tables, outputs


def compose(steps: Plan, estimator: onnx.ModelProto, contract: Contract) -> onnx.ModelProto:
    """Put the plan's nodes in front of the estimator's converted graph (whose input is FEATURES).

    The estimator's model keeps its producer, graph name and outputs; its input becomes the
    contract's one [N, 1] tensor per feature.
    """
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    parts: list[str] = []
    for index, block in enumerate(steps.blocks):
        if isinstance(block, NumericBlock):
            added, tensors, output = _numeric_nodes(block, index)
            parts.append(output)
        else:
            added, tensors, outputs = _categorical_nodes(block, index)
            parts.extend(outputs)
        nodes.extend(added)
        initializers.extend(tensors)
    shape = numpy_helper.from_array(np.array([-1, steps.width], dtype=np.int64), f"{PREFIX}shape")
    initializers.append(shape)
    nodes.append(helper.make_node("Concat", parts, [f"{PREFIX}joined"], axis=2, name=f"{PREFIX}join"))
    nodes.append(
        helper.make_node("Reshape", [f"{PREFIX}joined", shape.name], [FEATURES], name=f"{PREFIX}features")
    )

    graph = estimator.graph
    taken = {name for node in graph.node for name in (*node.input, *node.output, node.name)}
    taken |= {tensor.name for tensor in graph.initializer}
    clashes = sorted(name for name in taken if name.startswith(PREFIX))
    if clashes or [item.name for item in graph.input] != [FEATURES]:
        raise GraphError(
            f"the estimator's ONNX graph must have the one input {FEATURES!r} and no name starting with "
            f"{PREFIX!r} (got inputs {[item.name for item in graph.input]}, names {clashes})"
        )
    model = onnx.ModelProto()
    model.CopyFrom(estimator)
    del model.graph.node[:]
    model.graph.node.extend([*nodes, *graph.node])
    del model.graph.initializer[:]
    model.graph.initializer.extend([*initializers, *graph.initializer])
    del model.graph.input[:]
    model.graph.input.extend(
        helper.make_tensor_value_info(
            feature.name, onnx.TensorProto.FLOAT if feature.is_numeric else onnx.TensorProto.STRING, [None, 1]
        )
        for feature in contract.features
    )
    versions: dict[str, int] = dict(MIN_OPSETS)
    for entry in estimator.opset_import:
        versions[entry.domain] = max(versions.get(entry.domain, 0), entry.version)
    del model.opset_import[:]
    model.opset_import.extend(
        helper.make_opsetid(domain, version) for domain, version in sorted(versions.items())
    )
    model.ir_version = max(estimator.ir_version, helper.find_min_ir_version_for(list(model.opset_import)))
    return model
