"""Contract tests over the neuron registry: every registered neuron, the same checks.

Shapes, finiteness, a gradient on every learnable parameter, state in and out (two chunks
passing the state equal one call), the state_dict round trip, the functional step equal to
the module, the fused CPU kernel equal to the reference; then one hand-checked trace per
neuron and an oracle per neuron from a peer library (snnTorch ``Leaky`` / ``Synaptic``,
SpikingJelly ``IFNode``), run in two chunks that carry the peer's own state.
"""

from __future__ import annotations

import pytest
import torch

from spikecim.config import NeuronConfig
from spikecim.errors import SpikecimError
from spikecim.nn import LIF, Neuron, create_neuron, get_neuron, list_neurons, neuron_arguments
from spikecim.nn import functional as F
from spikecim.nn.kernels import cpu

KINDS = list_neurons()
T = 9


def _x(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype) * 0.9 + 0.4


def _learning(kind: str, **kw) -> Neuron:
    """The neuron with every parameter it can learn made learnable."""
    learn = {a: True for a in neuron_arguments(kind) if a.startswith("learn_")}
    return create_neuron(kind, **learn, **kw).double()


def _close(a, b, tol=0.0):
    torch.testing.assert_close(a, b, rtol=0, atol=tol)


def test_the_three_neurons_of_spikecim_are_registered():
    assert {"lif", "if", "synaptic"} <= set(KINDS)


@pytest.mark.parametrize("shape", [(T, 3, 5), (T, 2, 3, 4, 4)], ids=["dense", "conv"])
@pytest.mark.parametrize("kind", KINDS)
def test_output_is_binary_finite_spikes_of_the_input_shape(kind, shape):
    neuron = create_neuron(kind).double()
    x = _x(*shape) * 2
    spk = neuron(x)
    assert isinstance(spk, torch.Tensor) and spk.shape == x.shape and torch.isfinite(spk).all()
    assert set(spk.unique().tolist()) <= {0.0, 1.0}
    out, state = neuron.forward_state(x)
    assert torch.equal(out, spk)
    assert all(f.shape == x.shape[1:] and torch.isfinite(f).all() for f in state)
    _, mem = neuron.forward_with_mem(x)
    assert mem.shape == x.shape


@pytest.mark.parametrize("kind", KINDS)
def test_every_learnable_parameter_and_the_input_get_a_gradient(kind):
    neuron = _learning(kind)
    params = dict(neuron.named_parameters())
    assert params, "a neuron with nothing to learn"
    x = (_x(T, 4, 6) * 1.5).requires_grad_()
    spk, mem = neuron.forward_with_mem(x)
    (spk.sum() + mem.sum()).backward()
    for name, p in [*params.items(), ("x", x)]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("kind", KINDS)
def test_two_chunks_passing_the_state_equal_one_call(kind, backend):
    neuron = create_neuron(kind, backend=backend).double()
    x = _x(T, 3, 5) * 1.5
    whole, final = neuron.forward_state(x)
    first, state = neuron.forward_state(x[:4])
    second, state = neuron.forward_state(x[4:], state)
    assert 0 < whole.sum() < whole.numel()
    assert torch.equal(torch.cat([first, second]), whole)
    assert type(state) is type(final)
    for a, b in zip(state, final):
        _close(a, b, 1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_state_starts_afresh_on_every_call(kind):
    neuron = create_neuron(kind).double()
    x = _x(T, 3, 5) * 1.5
    first = neuron(x)
    neuron.forward_state(x, neuron.forward_state(x)[1])  # a call with a state passed in
    assert torch.equal(neuron(x), first)
    assert not any(isinstance(v, torch.Tensor) and v.shape[:1] == (3,) for v in vars(neuron).values())


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip_keeps_the_behaviour(kind):
    neuron = _learning(kind)
    with torch.no_grad():
        for i, p in enumerate(neuron.parameters()):
            p.mul_(0.9 - 0.05 * i)  # away from the defaults, still in range
    copy = _learning(kind)
    copy.load_state_dict(neuron.state_dict())
    assert neuron.state_dict().keys() == copy.state_dict().keys()
    x = _x(T, 3, 5) * 1.5
    assert torch.equal(copy.forward_with_mem(x)[1], neuron.forward_with_mem(x)[1])


@pytest.mark.parametrize("kind", KINDS)
def test_functional_step_loop_equals_the_module(kind):
    """``step_fn(x[t], state, params)`` of the class, looped by hand, equals the module's
    multi-step call (the reference loop) and its one-step ``step``."""
    neuron = create_neuron(kind, backend="reference").double()
    x = _x(T, 3, 5) * 1.5
    spk, mem = neuron.forward_with_mem(x)
    step_fn, p = type(neuron).step_fn, neuron.params()
    state = module_state = neuron.initial_state(x[0])
    for t in range(T):
        s, state = step_fn(x[t], state, p)
        s_mod, module_state = neuron.step(x[t], module_state)
        assert torch.equal(s, spk[t]) and torch.equal(s_mod, spk[t])
        assert torch.equal(state.v, mem[t]) and torch.equal(module_state.v, mem[t])


@pytest.mark.skipif(not cpu.available(torch.float64), reason="no C compiler: the CPU kernel is not built")
@pytest.mark.parametrize(
    "kind", [k for k in KINDS if issubclass(get_neuron(k), LIF)]
)  # the LIF family's kernel
def test_fused_cpu_kernel_equals_the_reference(kind):
    out = {}
    for backend in ("reference", "cpu"):
        neuron = _learning(kind, backend=backend)
        x = (_x(T, 4, 6) * 1.5).requires_grad_()
        spk, mem = neuron.forward_with_mem(x)
        w = torch.linspace(0.1, 1.0, 6, dtype=torch.float64)
        grads = torch.autograd.grad(spk.sum() + (mem * w).sum(), [x, *neuron.parameters()])
        out[backend] = (spk, mem, *grads)
    assert torch.equal(out["cpu"][0], out["reference"][0])
    for a, b in zip(out["cpu"][1:], out["reference"][1:]):
        _close(a, b, 1e-9)


# Hand-checked traces: float64, one neuron, delayed subtract reset (the default), inputs and
# expected values worked out from the equations in spikecim.nn.functional's docstring.
HAND = {
    # beta = 0.5, theta = 1, I = 0.8 each step:
    # U1 = 0.8; U2 = 0.4 + 0.8 = 1.2 (S); U3 = 0.6 + 0.8 - 1 = 0.4; U4 = 0.2 + 0.8 = 1.0 (not > 1)
    "lif": ({"beta": 0.5, "threshold": 1.0}, [0.8, 0.8, 0.8, 0.8], [0, 1, 0, 0], [0.8, 1.2, 0.4, 1.0]),
    # theta = 1, I = 0.6 each step: U1 = 0.6; U2 = 1.2 (S); U3 = 1.2 + 0.6 - 1 = 0.8; U4 = 1.4 (S)
    "if": ({"threshold": 1.0}, [0.6, 0.6, 0.6, 0.6], [0, 1, 0, 1], [0.6, 1.2, 0.8, 1.4]),
    # alpha = beta = 0.5, theta = 1, x = 1, 1, 0, 0: I = 1, 1.5, 0.75, 0.375;
    # U1 = 1 (not > 1); U2 = 0.5 + 1.5 = 2 (S); U3 = 1 + 0.75 - 1 = 0.75; U4 = 0.375 + 0.375 = 0.75
    "synaptic": (
        {"alpha": 0.5, "beta": 0.5, "threshold": 1.0},
        [1.0, 1.0, 0.0, 0.0],
        [0, 1, 0, 0],
        [1.0, 2.0, 0.75, 0.75],
    ),
    # beta = rho = 0.5, theta0 = gamma = 1, I = 0.8, same-step subtract reset of theta[t]:
    # theta 1: V 0.8; theta 1: V 1.2 (S) -> 0.2, A 1; theta 2: V 0.9, A 0.5; theta 1.5: V 1.25,
    # A 0.25; theta 1.25: V 1.425 (S) -> 0.175, A 1.125; theta 2.125: V 0.8875
    "alif": (
        {"beta": 0.5, "threshold": 1.0, "rho": 0.5, "gamma": 1.0},
        [0.8] * 6,
        [0, 1, 0, 0, 1, 0],
        [0.8, 0.2, 0.9, 1.25, 0.175, 0.8875],
    ),
}


def test_every_registered_neuron_has_a_hand_checked_trace():
    assert set(KINDS) <= set(HAND)


@pytest.mark.parametrize("kind", sorted(HAND))
def test_hand_checked_trace(kind):
    kw, inputs, spikes, membrane = HAND[kind]
    x = torch.tensor(inputs, dtype=torch.float64).view(-1, 1, 1)
    spk, mem = create_neuron(kind, **kw).double().forward_with_mem(x)
    assert spk.flatten().tolist() == spikes
    assert mem.flatten().tolist() == pytest.approx(membrane, abs=1e-12)


def _chunks_snntorch(ref, x, n_states: int, split: int):
    """Step an snnTorch neuron from zero state over two chunks, carrying its state across."""
    states = [torch.zeros_like(x[0]) for _ in range(n_states)]
    spikes, mems = [], []
    for chunk in (x[:split], x[split:]):
        for t in range(chunk.shape[0]):
            spk, *states = ref(chunk[t], *states)
            spikes.append(spk)
            mems.append(states[-1])
    return torch.stack(spikes).to(x.dtype), torch.stack(mems)


def _chunks_spikingjelly(node, x, split: int):
    """A multi-step SpikingJelly node over two chunks; its state ``v`` carries across."""
    from spikingjelly.activation_based import functional

    functional.reset_net(node)
    spikes, mems = [], []
    for chunk in (x[:split], x[split:]):
        spikes.append(node(chunk))
        mems.append(node.v_seq)
    return torch.cat(spikes), torch.cat(mems)


def _oracle(kind: str, x: torch.Tensor, split: int):
    """(our neuron, the peer's (spikes, membrane)) where the semantics match exactly."""
    if kind == "lif":  # delayed subtract reset = snnTorch Leaky's default
        import snntorch as snn

        ours = create_neuron("lif", beta=0.8, threshold=1.0)
        return ours, _chunks_snntorch(snn.Leaky(beta=0.8, threshold=1.0).double(), x, 1, split)
    if kind == "synaptic":  # subtract reset = snnTorch Synaptic
        import snntorch as snn

        ours = create_neuron("synaptic", alpha=0.7, beta=0.8, threshold=1.0)
        return ours, _chunks_snntorch(snn.Synaptic(alpha=0.7, beta=0.8).double(), x, 2, split)
    if kind == "if":  # same-step subtract reset = SpikingJelly IFNode with v_reset=None
        from spikingjelly.activation_based import neuron

        ours = create_neuron("if", threshold=1.0, reset_delay=False)
        node = neuron.IFNode(v_threshold=1.0, v_reset=None, step_mode="m", store_v_seq=True)
        return ours, _chunks_spikingjelly(node.double(), x, split)
    if kind == "alif":
        return _alif_and_norse_lsnn(x, split)
    pytest.skip(f"no peer library implements '{kind}'")


def _alif_and_norse_lsnn(x: torch.Tensor, split: int):
    """Norse's LSNN (``lsnn_feed_forward_step``: Euler steps of dt) with the synapse's time
    constant dt (its current is the last step's input), zero reset: with c = dt/tau_mem,
    beta = 1 - c, rho = 1 - dt/tau_b and gamma = rho*(Norse's beta), the adaptive LIF fed
    I[t] = c*i[t] has its spikes and membrane; Norse starts from i = x[0]/c and is fed
    x[t+1]/c (the threshold b starts at v_th)."""
    from norse.torch.functional import lsnn

    dt, c, rho, jump = 1e-3, 0.2, 0.9, 0.5
    p = lsnn.LSNNParameters(
        tau_syn_inv=torch.tensor(1 / dt, dtype=torch.float64),
        tau_mem_inv=torch.tensor(c / dt, dtype=torch.float64),
        tau_adapt_inv=torch.tensor((1 - rho) / dt, dtype=torch.float64),
        v_th=torch.tensor(1.0, dtype=torch.float64),
        beta=torch.tensor(jump, dtype=torch.float64),
        method="heaviside",
    )
    f64 = {
        k: torch.tensor(v, dtype=torch.float64)
        for k, v in {"beta": 1 - c, "rho": rho, "gamma": rho * jump}.items()
    }
    ours = create_neuron("alif", threshold=1.0, reset="zero", **f64)  # float64 values, as Norse's
    state = lsnn.LSNNFeedForwardState(v=torch.zeros_like(x[0]), i=x[0] / c, b=torch.full_like(x[0], 1.0))
    feed = torch.cat([x[1:], torch.zeros_like(x[:1])]) / c
    spikes, mems = [], []
    for chunk in (feed[:split], feed[split:]):  # Norse carries its own state across
        for t in range(chunk.shape[0]):
            z, state = lsnn.lsnn_feed_forward_step(chunk[t], state, p, dt)
            spikes.append(z)
            mems.append(state.v)
    return ours, (torch.stack(spikes), torch.stack(mems))


@pytest.mark.parametrize("kind", KINDS)
def test_chunks_passing_the_state_match_a_peer_library_carrying_its_own(kind):
    x, split = _x(16, 3, 6, seed=4) * 1.2, 7
    ours, (ref_spk, ref_mem) = _oracle(kind, x, split)
    ours = ours.double()
    s1, state = ours.forward_state(x[:split])
    s2, _ = ours.forward_state(x[split:], state)
    assert 0.05 < ref_spk.mean().item() < 0.9  # firing and resetting both happen
    assert torch.equal(torch.cat([s1, s2]), ref_spk)
    _, mem = ours.forward_with_mem(x)
    _close(mem, ref_mem, 1e-9)


# The registry and the run config read from it.


def test_create_neuron_ignores_none_so_defaults_hold():
    assert create_neuron("lif", beta=None).beta.item() == pytest.approx(0.9)
    assert type(create_neuron("if", threshold=None)) is get_neuron("if")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: create_neuron("hh"), r"^neuron: unknown 'hh', allowed: alif, if, lif, synaptic"),
        (
            lambda: create_neuron("if", beta=0.5),
            r"^neuron: unknown argument 'beta' for 'if', allowed: threshold",
        ),
        (lambda: create_neuron("lif", beta=1.5), r"^beta: must be in \[0, 1\]"),
    ],
)
def test_registry_errors_are_one_line_and_name_the_allowed_values(call, message):
    with pytest.raises(SpikecimError, match=message) as e:
        call()
    assert "\n" not in str(e.value)


def test_run_config_neuron_kind_is_checked_against_the_registry():
    with pytest.raises(ValueError, match="unknown neuron 'hh', allowed: alif, if, lif, synaptic"):
        NeuronConfig(kind="hh")
    for kind in KINDS:
        kw = NeuronConfig(kind=kind).module_kwargs()
        assert set(kw) <= set(neuron_arguments(kind))
        assert type(create_neuron(kind, **kw)) is get_neuron(kind)
    assert "beta" not in NeuronConfig(kind="if").module_kwargs()


def test_spikecim_list_neurons_prints_the_registry(capsys):
    from spikecim.cli.main import main

    assert main(["list", "neurons"]) == 0
    assert capsys.readouterr().out.strip() == f"neurons: {', '.join(KINDS)}"


def test_lif_state_and_params_are_small_typed_objects():
    assert F.LIFState._fields == ("v",) and F.SynapticState._fields == ("i", "v")
    p = F.LIFParams(0.5, 1.0)
    with pytest.raises(AttributeError):
        p.beta = 0.7  # frozen


@pytest.mark.parametrize("call", ["forward", "forward_state", "forward_with_mem"])
@pytest.mark.parametrize("kind", KINDS)
def test_input_without_time_steps_or_of_no_real_dtype_is_a_one_line_error(kind, call):
    neuron = create_neuron(kind)
    cases = [
        (torch.zeros(0, 2, 5), "x: must hold at least one time step, got shape (0, 2, 5)"),
        (torch.tensor(1.0), "x: must be time-major [T, ...], got a scalar"),
        (
            torch.ones(3, 2, 5, dtype=torch.bool),
            "x: dtype torch.bool is not allowed; allowed: floating point or integer",
        ),
        (
            torch.ones(3, 2, dtype=torch.complex64),
            "x: dtype torch.complex64 is not allowed; allowed: floating point or integer",
        ),
    ]
    for x, message in cases:
        with pytest.raises(SpikecimError) as err:
            getattr(neuron, call)(x)
        assert str(err.value) == message


def test_the_adaptive_lif_is_traced_with_two_states_and_refused_by_nir_export():
    from spikecim.interop import to_nir
    from spikecim.nn import Sequential
    from spikecim.trace import trace

    model = Sequential(torch.nn.Linear(6, 5), create_neuron("alif"), torch.nn.Linear(5, 2))
    wl = trace(model, [_x(T, 3, 6, dtype=torch.float32)])
    assert [layer.neuron_states for layer in wl.layers] == [2, 1]  # the membrane and the adaptation
    assert wl.metrics()["membrane_bytes"] == 5 * 2 * 4  # 5 neurons, two float32 states
    model.input_shape = (6,)
    with pytest.raises(SpikecimError, match=r"^layer '1' \(ALIF\): no NIR equivalent$"):
        to_nir(model)
