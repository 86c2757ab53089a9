"""Conditional MAF: invertibility, densities, autoregressive structure, checkpoints, fitting."""

import numpy as np
import pytest
import tensorflow as tf

from galsim_hub.networks.flow import ConditionalMAF, block_orders


def _random_flow(latent_dim=4, n_conditions=2, seed=0, **kwargs):
    flow = ConditionalMAF(latent_dim, n_conditions, n_blocks=3, hidden_units=(16, 16), **kwargs)
    rng = np.random.default_rng(seed)
    for v in flow.trainable_variables:
        v.assign(0.3 * rng.normal(size=v.shape).astype(np.float32))
    return flow


def test_block_orders_alternate_reverse_and_seeded_random():
    orders = block_orders(6, 4, seed=3)
    np.testing.assert_array_equal(orders[0], np.arange(6)[::-1])
    np.testing.assert_array_equal(orders[2], np.arange(6)[::-1])
    assert sorted(orders[1]) == list(range(6))
    np.testing.assert_array_equal(block_orders(6, 4, seed=3), orders)
    assert not np.array_equal(block_orders(6, 4, seed=4)[1], orders[1])


def test_fresh_and_zero_weight_flows_are_identity():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(5, 4)).astype(np.float32)
    cond = rng.normal(size=(5, 2)).astype(np.float32)
    fresh = ConditionalMAF(4, 2, n_blocks=3, hidden_units=(8, 8))
    np.testing.assert_allclose(fresh.sample(noise, cond).numpy(), noise, atol=1e-6)
    flow = _random_flow()
    for v in flow.trainable_variables:
        v.assign(tf.zeros_like(v))
    np.testing.assert_allclose(flow.sample(noise, cond).numpy(), noise, atol=1e-6)
    expected = -0.5 * np.sum(noise**2 + np.log(2 * np.pi), axis=1)
    np.testing.assert_allclose(flow.log_prob(noise, cond).numpy(), expected, rtol=1e-5)


def test_sample_then_inverse_recovers_noise():
    flow = _random_flow()
    flow.set_latent_normalisation([1.0, -2.0, 0.5, 0.0], [2.0, 0.5, 1.0, 3.0])
    rng = np.random.default_rng(2)
    noise = rng.normal(size=(8, 4)).astype(np.float32)
    cond = rng.normal(size=(8, 2)).astype(np.float32)
    z = flow.sample(noise, cond)
    assert not np.allclose(z.numpy(), noise, atol=1e-2)
    recovered, _ = flow.inverse(z, cond)
    np.testing.assert_allclose(recovered.numpy(), noise, atol=1e-4)


def test_log_prob_matches_change_of_variables():
    flow = _random_flow()
    flow.set_latent_normalisation([0.5, 0.0, 0.0, -1.0], [1.5, 1.0, 0.7, 1.0])
    rng = np.random.default_rng(3)
    z = tf.constant(rng.normal(size=(6, 4)).astype(np.float32))
    cond = tf.constant(rng.normal(size=(6, 2)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(z)
        u, log_det = flow.inverse(z, cond)
    jacobian = tape.batch_jacobian(u, z).numpy()
    _, numeric_log_det = np.linalg.slogdet(jacobian.astype(np.float64))
    np.testing.assert_allclose(log_det.numpy(), numeric_log_det, atol=1e-4)
    base = -0.5 * np.sum(u.numpy() ** 2 + np.log(2 * np.pi), axis=1)
    np.testing.assert_allclose(flow.log_prob(z, cond).numpy(), base + numeric_log_det, rtol=1e-5, atol=1e-4)


def test_conditions_change_the_density_and_samples():
    flow = _random_flow(n_conditions=1)
    z = np.random.default_rng(4).normal(size=(2, 4)).astype(np.float32)
    cond = np.array([[0.3], [0.3]], np.float32)
    assert not np.allclose(flow.log_prob(z, cond).numpy(), flow.log_prob(z, cond + 1.0).numpy())
    assert not np.allclose(flow.sample(z, cond).numpy(), flow.sample(z, cond + 1.0).numpy())


def test_single_block_jacobian_is_triangular_in_its_order():
    flow = ConditionalMAF(5, 1, n_blocks=1, hidden_units=(12,))
    rng = np.random.default_rng(5)
    for v in flow.trainable_variables:
        v.assign(0.3 * rng.normal(size=v.shape).astype(np.float32))
    z = tf.constant(rng.normal(size=(1, 5)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(z)
        u, _ = flow.inverse(z, tf.constant([[0.1]]))
    jac = tape.batch_jacobian(u, z).numpy()[0]
    order = flow.orders.numpy()[0]
    permuted = jac[np.ix_(order, order)]
    assert np.allclose(np.triu(permuted, k=1), 0.0, atol=1e-7)
    assert np.all(np.abs(np.diag(permuted)) > 0)


def test_checkpoint_round_trip_keeps_weights_and_orders(tmp_path):
    flow = _random_flow(permutation_seed=7)
    flow.set_latent_normalisation(np.ones(4), 2 * np.ones(4))
    path = tf.train.Checkpoint(flow=flow).write(str(tmp_path / "ckpt"))
    other = ConditionalMAF(4, 2, n_blocks=3, hidden_units=(16, 16), permutation_seed=0)
    tf.train.Checkpoint(flow=other).read(path).assert_consumed()
    np.testing.assert_array_equal(other.orders.numpy(), flow.orders.numpy())
    rng = np.random.default_rng(6)
    noise, cond = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)
    np.testing.assert_allclose(other.sample(noise, cond).numpy(), flow.sample(noise, cond).numpy(), atol=1e-6)


def test_sample_traces_in_tf_function():
    flow = _random_flow()
    fn = tf.function(flow.sample, input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None, 2])])
    noise = np.zeros((3, 4), np.float32)
    cond = np.ones((3, 2), np.float32)
    np.testing.assert_allclose(fn(noise, cond).numpy(), flow.sample(noise, cond).numpy(), atol=1e-6)


@pytest.mark.slow
def test_fit_conditional_gaussian():
    rng = np.random.default_rng(7)
    n = 4096
    c = rng.normal(size=(n, 1)).astype(np.float32)
    z = np.concatenate([2.0 * c + 0.5 * rng.normal(size=(n, 1)), -c + 0.3 * rng.normal(size=(n, 1))], axis=1).astype(
        np.float32
    )
    tf.keras.utils.set_random_seed(0)
    flow = ConditionalMAF(2, 1, n_blocks=2, hidden_units=(32, 32))
    optimizer = tf.keras.optimizers.Adam(3e-3)

    @tf.function
    def step(zb, cb):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow.log_prob(zb, cb))
        grads = tape.gradient(loss, flow.trainable_variables)
        optimizer.apply_gradients(zip(grads, flow.trainable_variables))
        return loss

    for _i in range(600):
        idx = rng.integers(0, n, 256)
        step(z[idx], c[idx])
    for value in (-1.0, 1.0):
        noise = rng.normal(size=(2000, 2)).astype(np.float32)
        samples = flow.sample(noise, np.full((2000, 1), value, np.float32)).numpy()
        np.testing.assert_allclose(samples.mean(0), [2.0 * value, -value], atol=0.12)
        np.testing.assert_allclose(samples.std(0), [0.5, 0.3], atol=0.08)
