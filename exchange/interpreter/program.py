"""``Program``: an ONNX graph prepared for repeated, differentiable execution on one backend.

Construction does all the work that does not depend on the data: it picks an implementation for
every node (failing with :class:`UnsupportedOp` before anything runs), folds the parts of the graph
that only depend on constants, and compiles the rest into a flat list of closures over integer
slots. :meth:`Program.run` then only fills the slots and calls the closures in order, so a training
step pays little for being interpreted.

Values come in two kinds. *Static* values (constants, shapes, and anything computed from them only)
are numpy arrays known without tracing; *dynamic* values are backend arrays that may carry
gradients or be jax tracers. Operator inputs declared static (a Reshape's shape) always receive the
numpy form, which keeps jax graphs jit-able.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx
import onnx.inliner

from flonnx.exchange.definition import check_graph
from flonnx.exchange.errors import InvalidModel, UnsupportedOp
from flonnx.exchange.interpreter import ops as _ops  # noqa: F401 - fills the generic op table
from flonnx.exchange.interpreter._context import Context
from flonnx.exchange.interpreter._graph import ResolvedNode, initializer_arrays, resolve_nodes
from flonnx.exchange.interpreter.backend import Backend, load_backend

__all__ = ["Program", "missing_ops"]

Array = Any
Env = list[Any]
Step = Callable[[Env, Context, dict[str, Any]], None]


def _inlined(model: onnx.ModelProto) -> onnx.ModelProto:
    # Exporters may emit model-local functions; inlining them keeps one op table.
    return onnx.inliner.inline_local_functions(model) if len(model.functions) else model


def missing_ops(model: onnx.ModelProto, backend: str = "numpy") -> list[tuple[str, str, int]]:
    """The operators of ``model`` that ``backend`` cannot run.

    Args:
        model: The ONNX model.
        backend: A backend name from :func:`available_backends`.

    Returns:
        ``(domain, op_type, opset)`` for each distinct unsupported operator; empty if runnable.
    """
    _, problems = resolve_nodes(_inlined(model), load_backend(backend))
    return [(domain, op_type, opset) for domain, op_type, opset, _ in problems]


class _Slots:
    """Assigns list positions to value names; static and backend forms get separate slots."""

    NONE = 0  # slot holding None, used for omitted optional inputs

    def __init__(self) -> None:
        self.count = 1
        self.dynamic: dict[str, int] = {}
        self.static: dict[str, int] = {}

    def new(self) -> int:
        self.count += 1
        return self.count - 1


class Program:
    """An ONNX model compiled for one backend.

    Args:
        model: The ONNX model (validated by the caller; see ``ONNX-NOTES.md`` on untrusted input).
        backend: ``"numpy"``, ``"torch"`` or ``"jax"`` (see :func:`available_backends`).
        running_var: How a training run updates BatchNormalization's running variance:
            ``"unbiased"`` (PyTorch's convention, the default) or ``"biased"`` (Keras, and the
            ONNX reference for graphs exported with ``training_mode=1``).

    Raises:
        UnsupportedOp: Some operator (or attribute) is not implemented; the message names the
            first one, and a note lists all of them.
        InvalidModel: The graph is malformed or hostile (unknown value, unsorted nodes or a cycle,
            duplicate names, external data, too many nodes, a tensor above
            ``MAX_TENSOR_ELEMENTS``: :func:`flonnx.exchange.definition.check_graph`).
        ValueError: The backend is unknown or not installed.
    """

    def __init__(
        self, model: onnx.ModelProto, backend: str = "numpy", *, running_var: str = "unbiased"
    ) -> None:
        if running_var not in ("unbiased", "biased"):
            raise ValueError(f"running_var must be 'unbiased' or 'biased', got {running_var!r}")
        # Structure and sizes before anything is allocated (operators: UnsupportedOp below).
        check_graph(model, operators=False)
        self.model = _inlined(model)
        self.backend: Backend = load_backend(backend)
        self._unbiased = running_var == "unbiased"
        self._folder: Backend = load_backend("numpy")
        self._fold_ctx = Context(self._folder, self._folder.xp)
        nodes, problems = resolve_nodes(self.model, self.backend)
        if problems:
            domain, op_type, opset, reason = problems[0]
            error = UnsupportedOp(op_type, domain, opset, backend)
            error.add_note(
                "unsupported: " + "; ".join(f"{d}::{o} (opset {v}): {r}" for d, o, v, r in problems)
            )
            raise error
        graph = self.model.graph
        self.initializers: dict[str, np.ndarray] = initializer_arrays(graph)
        """The model's initializers as numpy arrays (the default values of the parameters)."""
        self.input_names: list[str] = [i.name for i in graph.input if i.name not in self.initializers]
        self.output_names: list[str] = [o.name for o in graph.output]
        self._compile(nodes)

    # --- construction ------------------------------------------------------------------------

    def _compile(self, nodes: list[ResolvedNode]) -> None:
        be = self.backend
        slots = _Slots()
        self._slots = slots
        self._const_slots: dict[str, int] = {}  # backend copies of constants, made once
        consts: dict[str, np.ndarray] = {}  # static values known now
        runtime_static: set[str] = set()  # static values computed per run (from shapes)
        dynamic: set[str] = set()
        self._param_slots: list[tuple[str, int, Array]] = []
        self._input_slots: list[tuple[str, int]] = []
        for name, value in self.initializers.items():
            if np.issubdtype(value.dtype, np.floating):
                dynamic.add(name)
                slot = slots.dynamic.setdefault(name, slots.new())
                self._param_slots.append((name, slot, None))
            consts[name] = value  # also the static form of float initializers
        for name in self.input_names:
            dynamic.add(name)
            self._input_slots.append((name, slots.dynamic.setdefault(name, slots.new())))

        steps: list[Step] = []
        for resolved in nodes:
            node, spec = resolved.node, resolved.spec
            names = list(node.input)
            for n in names:
                if n and n not in consts and n not in runtime_static and n not in dynamic:
                    raise InvalidModel(
                        f"node {node.name or node.op_type!r} reads {n!r} before it is produced "
                        "(nodes must be topologically sorted)"
                    )
            attrs = dict(resolved.attributes)
            if spec.wants_output_count:
                attrs["_n_outputs"] = len(node.output)
            outs = list(node.output)
            # Inputs at static positions are read in numpy form anyway, so they do not stop a
            # node (a Range, a ConstantOfShape) from being computed in numpy.
            static_inputs = [
                (pos, n)
                for pos, n in enumerate(names)
                if n and (pos in spec.static or (n in consts and n not in dynamic) or n in runtime_static)
            ]
            all_static = len(static_inputs) == sum(1 for n in names if n)
            if all_static and not spec.random:
                if all(n in consts for _, n in static_inputs):
                    args = [consts[n] if n else None for n in names]
                    result = spec.fn(self._fold_ctx, *args, **attrs)
                    for k, value in enumerate(_as_tuple(result)[: len(outs)]):
                        if outs[k]:
                            consts[outs[k]] = np.asarray(value)
                    continue
                steps.append(self._static_step(spec.fn, names, outs, attrs, consts, steps))
                runtime_static.update(o for o in outs if o)
                continue
            if spec.shape_only:
                in_slots = [self._dynamic_slot(n, consts, runtime_static, steps) for n in names]
                out_slots = [slots.static.setdefault(o, slots.new()) for o in outs]
                steps.append(_make_step(spec.fn, in_slots, out_slots, attrs, {}))
                runtime_static.update(o for o in outs if o)
                continue
            in_slots = []
            for position, n in enumerate(names):
                if not n:
                    in_slots.append(_Slots.NONE)
                elif position in spec.static:
                    in_slots.append(self._static_slot(n, consts, steps))
                else:
                    in_slots.append(self._dynamic_slot(n, consts, runtime_static, steps))
            out_slots = [slots.dynamic.setdefault(o, slots.new()) if o else slots.new() for o in outs]
            state = {pos: names[i] for pos, i in spec.state.items() if i < len(names) and names[i]}
            steps.append(_make_step(spec.fn, in_slots, out_slots, attrs, state))
            dynamic.update(o for o in outs if o)

        self._output_slots = []
        for name in self.output_names:
            if name in dynamic:
                self._output_slots.append((name, slots.dynamic[name]))
            elif name in consts or name in runtime_static:
                self._output_slots.append((name, self._dynamic_slot(name, consts, runtime_static, steps)))
            else:
                raise InvalidModel(f"graph output {name!r} is never produced")
        self._steps = steps
        self._consts = consts
        template: list[Any] = [None] * slots.count
        for name, slot in self._const_slots.items():
            template[slot] = be.asarray(consts[name])
        for name, slot in slots.static.items():
            if name in consts:
                template[slot] = consts[name]
        self._template = template
        self._param_slots = [
            (name, slot, template[slot] if template[slot] is not None else be.asarray(consts[name]))
            for name, slot, _ in self._param_slots
        ]

    def _static_slot(self, name: str, consts: dict[str, np.ndarray], steps: list[Step]) -> int:
        """Slot holding the numpy form of ``name``."""
        slots = self._slots
        if name in slots.static:
            return slots.static[name]
        slot = slots.new()
        slots.static[name] = slot
        if name not in consts:
            # A dynamic value used as a shape: only possible outside jit.
            src = slots.dynamic[name]
            to_numpy = self.backend.to_numpy

            def convert(env: Env, ctx: Context, state: dict[str, Any]) -> None:
                try:
                    env[slot] = to_numpy(env[src])
                except Exception as exc:  # noqa: BLE001 - tracer errors vary by jax version
                    raise InvalidModel(
                        f"{name!r} is used as a shape/axes/ratio but is computed from traced data"
                    ) from exc

            steps.append(convert)
        return slot

    def _dynamic_slot(
        self,
        name: str,
        consts: dict[str, np.ndarray],
        runtime_static: set[str],
        steps: list[Step],
    ) -> int:
        """Slot holding the backend form of ``name``."""
        slots = self._slots
        if not name:
            return _Slots.NONE
        if name in slots.dynamic:
            return slots.dynamic[name]
        slot = slots.new()
        slots.dynamic[name] = slot
        if name in runtime_static:
            src = slots.static[name]
            asarray = self.backend.asarray

            def convert(env: Env, ctx: Context, state: dict[str, Any]) -> None:
                env[slot] = asarray(np.asarray(env[src]))

            steps.append(convert)
        else:
            self._const_slots[name] = slot
        return slot

    def _static_step(
        self,
        fn: Callable[..., Any],
        names: list[str],
        outs: list[str],
        attrs: dict[str, Any],
        consts: dict[str, np.ndarray],
        steps: list[Step],
    ) -> Step:
        slots = self._slots
        in_slots = [self._static_slot(n, consts, steps) if n else _Slots.NONE for n in names]
        out_slots = [slots.static.setdefault(o, slots.new()) if o else slots.new() for o in outs]
        fold_ctx = self._fold_ctx
        inner = _make_step(fn, in_slots, out_slots, attrs, {})

        def step(env: Env, ctx: Context, state: dict[str, Any]) -> None:
            inner(env, fold_ctx, state)

        return step

    # --- execution ---------------------------------------------------------------------------

    def run(
        self,
        params: Mapping[str, Array],
        inputs: Mapping[str, Array],
        training: bool = False,
        rng: Any = None,
    ) -> tuple[dict[str, Array], dict[str, Array]]:
        """Execute the graph.

        Args:
            params: Initializer name -> backend array in ONNX layout. Floating-point initializers
                not given are taken from the model as constants; integer initializers (shapes,
                axes, class labels) are structure and always read from the model.
            inputs: Graph input name -> backend array (numpy arrays are converted).
            training: Use batch statistics in BatchNormalization and return the updated running
                statistics; make Dropout active.
            rng: Randomness for Dropout when training: an int seed, or a ``numpy.random.Generator``
                / ``torch.Generator`` / jax PRNG key for the respective backend.

        Returns:
            ``(outputs, state)``: graph output name -> backend array, and initializer name ->
            updated non-trainable value (BatchNormalization running mean/var; empty unless
            ``training``).

        Raises:
            InvalidModel: An input is missing or a parameter name is not an initializer.
        """
        env = self._template.copy()
        for name, slot, default in self._param_slots:
            value = params.get(name)
            env[slot] = default if value is None else value
        if len(params) and not set(params) <= self.initializers.keys():
            unknown = sorted(set(params) - self.initializers.keys())
            raise InvalidModel(f"params {unknown} are not initializers of the model")
        be = self.backend
        for name, slot in self._input_slots:
            try:
                value = inputs[name]
            except KeyError:
                raise InvalidModel(
                    f"missing graph input {name!r}; the model expects {self.input_names}"
                ) from None
            env[slot] = be.asarray(value) if isinstance(value, np.ndarray) and be.name != "numpy" else value
        ctx = Context(be, be.xp, training, be.make_rng(rng), self._unbiased)
        state: dict[str, Array] = {}
        for step in self._steps:
            step(env, ctx, state)
        return {name: env[slot] for name, slot in self._output_slots}, state


def _as_tuple(result: Any) -> tuple[Any, ...]:
    return result if isinstance(result, tuple) else (result,)


def _make_step(
    fn: Callable[..., Any],
    in_slots: list[int],
    out_slots: list[int],
    attrs: dict[str, Any],
    state: dict[int, str],
) -> Step:
    """A closure running one node; specialised for the common single-output case."""
    ins = tuple(in_slots)
    if len(out_slots) == 1 and not state:
        out = out_slots[0]
        if len(ins) == 1:
            a = ins[0]

            def step1(env: Env, ctx: Context, st: dict[str, Any]) -> None:
                result = fn(ctx, env[a], **attrs)
                env[out] = result[0] if result.__class__ is tuple else result

            return step1

        def step(env: Env, ctx: Context, st: dict[str, Any]) -> None:
            result = fn(ctx, *[env[i] for i in ins], **attrs)
            env[out] = result[0] if result.__class__ is tuple else result

        return step

    outs = tuple(out_slots)
    state_items = tuple(state.items())

    def step_n(env: Env, ctx: Context, st: dict[str, Any]) -> None:
        result = fn(ctx, *[env[i] for i in ins], **attrs)
        if not isinstance(result, tuple):
            result = (result,)
        if len(result) < len(outs):
            raise InvalidModel(f"{fn.__name__} produced {len(result)} outputs, the node asks for {len(outs)}")
        for k, slot in enumerate(outs):
            env[slot] = result[k]
        if ctx.training and len(result) > 1:
            for position, name in state_items:
                st[name] = result[position]

    return step_n
