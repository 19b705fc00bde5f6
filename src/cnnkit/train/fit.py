"""The model-level API: :func:`fit`, :func:`evaluate` and :func:`predict`, as a Keras user expects them.

No run directory is needed: ``fit`` returns a :class:`~cnnkit.train.callbacks.History`; files are written
only by callbacks that are asked to (``MetricsLog``, ``KeepBest(save=...)``, a run directory).

Examples
--------
>>> import numpy as np
>>> import cnnkit
>>> from cnnkit.nn import Linear
>>> from cnnkit.optim import SGD
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((200, 2)).astype(np.float32); y = (x.sum(axis=1) > 0).astype(int)
>>> net = Linear(2, 2, rng=rng)
>>> history = cnnkit.fit(net, (x, y), epochs=5, batch_size=20, optimizer=SGD(net, lr=0.5), validation_split=0.2)
>>> len(history.records), history.records[-1]["val_accuracy"] > 0.9
(5, True)
>>> cnnkit.predict(net, x[:3]).shape
(3, 2)
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnkit.backend import Array, to_device, xp
from cnnkit.data.source import Source, as_source, labels_of, split
from cnnkit.errors import MismatchError
from cnnkit.protocols import LossFunction, Model
from cnnkit.train.callbacks import History
from cnnkit.train.loop import Callback, LoopState, run_epochs
from cnnkit.train.loop import evaluate as _evaluate


def check_fits(model: Model, source: Source, what: str = "the training data") -> None:
    """MismatchError when ``model`` does not give one output per class of ``source``, or a label lies
    outside the outputs (checked from the labels when they are at hand, and on one example's shape).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.data.source import as_source
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.train.fit import check_fits
    >>> net = Linear(4, 3, rng=np.random.default_rng(0))  # 3 outputs: labels 0, 1, 2
    >>> check_fits(net, as_source((np.zeros((2, 4), np.float32), np.array([0, 2]))))
    >>> check_fits(net, as_source((np.zeros((2, 4), np.float32), np.array([0, 5]))))
    Traceback (most recent call last):
        ...
    cnnkit.errors.MismatchError: the training data has labels from 0 to 5, but the network gives 3 outputs (labels 0 to 2)
    """
    if len(source) == 0:
        raise MismatchError(f"{what} holds no examples")
    x0, _ = source.take(np.arange(1))
    out = model.forward(to_device(x0), train=False)
    k = int(np.prod(out.shape[1:]))
    classes = source.classes
    if classes is not None and k != len(classes):
        raise MismatchError(
            f"the network gives {k} outputs per example but {what} has {len(classes)} classes "
            f"({', '.join(map(str, classes[:10]))}{' ...' if len(classes) > 10 else ''}); "
            f"its last layer must have one output per class"
        )
    labels = labels_of(source)
    if labels is not None and labels.size and (labels.min() < 0 or labels.max() >= k):
        raise MismatchError(
            f"{what} has labels from {labels.min()} to {labels.max()}, but the network gives {k} outputs (labels 0 to {k - 1})"
        )


def fit(
    model: Model,
    train_data: Source | tuple[Array, Array],
    epochs: int = 1,
    batch_size: int = 32,
    loss: LossFunction | None = None,
    optimizer: Any = None,
    *,
    validation_data: Source | tuple[Array, Array] | None = None,
    validation_split: float | None = None,
    test_data: Source | tuple[Array, Array] | None = None,
    callbacks: Sequence[Callback] = (),
    seed: int = 0,
    schedule: Any = None,
    initial_epoch: int = 0,
    records: list[dict[str, Any]] | None = None,
    eval_batch_size: int = 1000,
    progress: bool = False,
    verbose: bool = False,
    distributed: Any = None,
) -> History:
    """Train ``model`` on ``train_data`` for ``epochs`` epochs of mini-batch SGD (eq. 15.9); returns a History.

    * ``train_data``, ``validation_data``, ``test_data``: ``(x, y)`` arrays (``x`` as the network takes it,
      ``y`` integer class indices) or a :mod:`cnnkit.data` source (which may decode, preprocess and augment).
    * ``validation_split``: hold out this fraction of ``train_data`` (drawn with ``seed``) as validation data.
      Validation and test sets are evaluated after every epoch (``val_*``, ``test_*`` entries).
    * ``loss``: default :class:`~cnnkit.nn.SoftmaxCrossEntropy`; ``optimizer``: default SGD with lr 0.01 and
      momentum 0.9; ``schedule``: an :class:`~cnnkit.optim.LRSchedule` setting each epoch's rate.
    * ``callbacks``: e.g. :class:`~cnnkit.train.callbacks.EarlyStopping`, ``KeepBest``, ``ReduceLROnPlateau``,
      ``MetricsLog``.
    * Every random draw of epoch e depends on (``seed``, e) only: a run continued from a checkpoint with
      ``initial_epoch`` (and the earlier ``records``) repeats the uninterrupted run bit for bit.

    * ``distributed``: train together with the other processes of a group, e.g.
      ``distributed=MPICommunicator()`` in every process ``mpiexec`` started (or a
      :class:`~cnnkit.train.distributed.DataParallel`): each process runs a slice of every mini-batch of
      ``batch_size`` examples and all apply the summed gradient, so K processes end where one would (to
      rounding; see :mod:`cnnkit.train.distributed`). Every process must make the same call; callbacks with
      ``root_only`` (files, logs) run on rank 0 only.

    The network must give one output per class (MismatchError otherwise). The model's mode is left as it
    was: the loop runs training forwards with ``train=True`` and evaluations with ``train=False``.

    Examples
    --------
    Defaults: softmax cross entropy, SGD with lr 0.01 and momentum 0.9; 20% of the examples held out.

    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.train.fit import fit
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 2)).astype(np.float32); y = (x.sum(axis=1) > 0).astype(int)
    >>> net = Linear(2, 2, rng=rng)
    >>> history = fit(net, (x, y), epochs=4, batch_size=20, validation_split=0.2)
    >>> history.epochs, history.records[-1]["val_accuracy"] > 0.9, sum(map(sum, history.records[-1]["val_confusion"]))
    ([1, 2, 3, 4], True, 40)
    """
    from cnnkit.nn import SoftmaxCrossEntropy
    from cnnkit.optim import SGD

    parallel = None
    if distributed is not None:
        from cnnkit.train.distributed import as_parallel

        parallel = as_parallel(distributed)
    guard = parallel.guard() if parallel is not None else contextlib.nullcontext()
    with guard:  # several processes: an error on one of them must not leave the others waiting
        if validation_split is not None and validation_data is not None:
            raise ValueError("give validation_data or validation_split, not both")
        source = as_source(train_data)
        if len(source) == 0:
            raise ValueError("the training data holds no examples")
        sets: dict[str, Any] = {}
        if validation_split is not None:
            source, sets["val"] = split(source, validation_split, seed)
        elif validation_data is not None:
            sets["val"] = as_source(validation_data)
        if test_data is not None:
            sets["test"] = as_source(test_data)
        check_fits(model, source)
        for name, data in sets.items():
            check_fits(model, data, "the validation data" if name == "val" else "the test data")
        loss = loss if loss is not None else SoftmaxCrossEntropy()
        optimizer = optimizer if optimizer is not None else SGD(model, lr=0.01, momentum=0.9)
        base_lr = optimizer.lr
        lr_at = schedule.lr_at if schedule is not None else (lambda epoch: base_lr)
        history = History()
        extra: list[Callback] = []
        if parallel is not None:
            parallel.check_same(model=model, optimizer=optimizer, training_data=source, **{f"{k}_data": v for k, v in sets.items()},
                                settings={"epochs": epochs, "batch_size": batch_size, "seed": seed, "initial_epoch": initial_epoch,
                                          "loss": type(loss).__name__, "schedule": repr(schedule), "eval_batch_size": eval_batch_size})
            if not parallel.root:  # files and logs are rank 0's
                callbacks = [cb for cb in callbacks if not getattr(cb, "root_only", False)]
                progress = verbose = False
        if verbose:
            from cnnkit.train.rundir import EpochLog

            extra.append(EpochLog(print))
        run_epochs(
            model, loss, optimizer, source, epochs=epochs, batch_size=batch_size, seed=seed, lr_at=lr_at,
            evaluate_on=sets, eval_batch_size=eval_batch_size, start_epoch=initial_epoch, records=records,
            callbacks=[history, *callbacks, *extra], progress=progress, parallel=parallel,
        )
    return history


def evaluate(
    model: Model,
    data: Source | tuple[Array, Array],
    loss: LossFunction | None = None,
    batch_size: int = 1000,
    progress: bool = False,
) -> dict[str, Any]:
    """Loss, accuracy, top-1 and top-5 error and the confusion matrix of ``model`` on ``data`` (evaluation mode).

    Top-5 error is left out for 5 classes or fewer; ``confusion[i][j]`` counts examples of class i
    predicted as j. The network must give one output per class of ``data`` (MismatchError otherwise).

    Examples
    --------
    A hand-set network whose scores are its inputs: it predicts the larger coordinate, wrong on the third example.

    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.train.fit import evaluate
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> net.params["weight"][...] = np.eye(2); net.params["bias"][...] = 0
    >>> m = evaluate(net, (np.array([[1, 0], [0, 1], [1, 0]], np.float32), np.array([0, 1, 1])))
    >>> round(m["accuracy"], 4), m["top1_error"] == 1 / 3, m["confusion"]
    (0.6667, True, [[1, 0], [1, 1]])
    """
    from cnnkit.nn import SoftmaxCrossEntropy

    source = as_source(data)
    check_fits(model, source, "the data")
    return _evaluate(model, loss if loss is not None else SoftmaxCrossEntropy(), source, None, batch_size, progress)


def predict(model: Model, x: Array, batch_size: int = 1000) -> Array:
    """Class probabilities (N, K): softmax (eq. 15.7) of the network's scores on inputs ``x``, in evaluation mode.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Linear
    >>> from cnnkit.train.fit import predict
    >>> net = Linear(2, 2, rng=np.random.default_rng(0))
    >>> net.params["weight"][...] = np.eye(2); net.params["bias"][...] = 0  # scores = inputs
    >>> predict(net, np.array([[0, 0], [2, 0]], np.float32)).round(4)  # softmax of (0, 0) and (2, 0)
    array([[0.5   , 0.5   ],
           [0.8808, 0.1192]], dtype=float32)
    """
    from cnnkit.ops.activation import softmax

    outs = []
    for start in range(0, len(x), batch_size):
        scores = model.forward(to_device(x[start : start + batch_size]), train=False)
        outs.append(softmax(scores.reshape(scores.shape[0], -1)))
    if not outs:  # no examples: (0, K), K from the network's shape rules
        k = int(np.prod(model.output_shape(tuple(x.shape[1:])))) if hasattr(model, "output_shape") else 0
        return xp.zeros((0, k), dtype=model.dtype or np.float32)
    return xp.concatenate(outs, axis=0)


__all__ = ["History", "LoopState", "check_fits", "evaluate", "fit", "predict"]
