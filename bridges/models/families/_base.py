"""The ``ModelFamily`` base class: what a family of models decides when a checkpoint becomes a model.

A family is bound to one ``--arch`` string (``convmixer``, ``hf``, ``timm:resnet18``, ``mypkg.nets:resnet``) and
decides: whether it takes that string (:meth:`ModelFamily.takes`), its factory, the keyword arguments for a
checkpoint (:meth:`~ModelFamily.kwargs`), how the model is built (:meth:`~ModelFamily.build`, weights not yet
loaded), the preprocessing the model carries and the fallback used with a notice, and whether it runs a Hugging
Face model folder. Loading the weights strictly and eval mode are the same for every family
(``_architectures.build_model``).

The defaults are those of a factory (``package.module:function``): ``paras``, else the Lightning
``hyper_parameters`` the factory names; a forward that returns a tensor; no preprocessing of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from torch import nn

from epg_core import UsageError

from .._checkpoints import Checkpoint
from .._layouts import match_state
from .._preprocessing import Notice
from .._sources import accepted_kwargs, check_kwargs, checked_build, infer_num_classes, tensor_output
from .._spec import Preprocessing

__all__ = ["ModelFamily"]


class ModelFamily:
    """One family of models: which ``--arch`` strings it takes and how a checkpoint becomes one of its models.

    Subclasses set the class attributes and override what differs (most: :meth:`factory`, some
    :meth:`checkpoint_kwargs`, :meth:`model_preprocessing` or :meth:`fallback_preprocessing`). Register one with
    ``register_model_family`` (its ``name`` becomes an ``--arch`` value) or name it as ``--arch
    package.module:Class``.
    """

    #: the registry name: ``--arch NAME`` (any case), or the prefix of ``--arch NAME:MODEL`` when ``prefixed``
    name: ClassVar[str] = ""
    #: True: the family takes ``NAME:MODEL`` (timm:resnet18); False: the bare ``NAME`` (convmixer)
    prefixed: ClassVar[bool] = False
    #: how ``--arch`` names it, in help texts and in the error for an unknown architecture
    usage: ClassVar[str] = ""
    #: whether a Hugging Face model folder (config.json + weights) may be run with this family
    runs_hf_folder: ClassVar[bool] = False
    #: whether the model's forward is given a tensor output (``.logits``, a tuple's first item)
    wants_tensor_output: ClassVar[bool] = True
    #: whether a model whose last linear layer alone disagrees with the checkpoint is rebuilt with
    #: ``num_classes`` (a timm or torchvision model trained on other classes)
    infers_num_classes: ClassVar[bool] = False
    #: where :meth:`fallback_preprocessing` comes from, said in the notice when it is used
    fallback_from: ClassVar[str] = ""

    def __init__(self, architecture: str) -> None:
        self.architecture = architecture

    @classmethod
    def takes(cls, architecture: str) -> bool:
        """Whether ``--arch architecture`` names this family (``NAME`` in any case, or ``NAME:MODEL``)."""
        if cls.prefixed:
            prefix, sep, _ = architecture.partition(":")
            return bool(sep) and prefix == cls.name
        return architecture.strip().lower() == cls.name

    @classmethod
    def bind(cls, architecture: str) -> ModelFamily:
        """The family object for ``architecture`` (a family may hand over to another one, see ``factory``)."""
        return cls(architecture)

    @property
    def kind(self) -> str:
        """The family's name (``arch_kind``); a family given as ``package.module:Class`` without one: that."""
        return self.name or self.architecture

    @property
    def model_name(self) -> str:
        """The part after ``NAME:`` of a prefixed family's ``--arch`` (``resnet18`` in ``timm:resnet18``)."""
        return self.architecture.partition(":")[2]

    # ------------------------------------------------------------------------------------------ building

    def factory(self) -> Callable[..., nn.Module]:
        """The callable that builds the model from keyword arguments."""
        raise UsageError(f"--arch {self.architecture} has no factory")

    def checkpoint_kwargs(self, checkpoint: Checkpoint, notice: Notice | None = None) -> dict[str, Any]:
        """The factory's keyword arguments the checkpoint gives (unchecked): its ``paras``, else the Lightning
        ``hyper_parameters`` the factory names (the others: one notice)."""
        kwargs = dict(checkpoint.paras)
        if not kwargs and checkpoint.hyper_parameters:
            kwargs = accepted_kwargs(self.factory(), checkpoint.hyper_parameters, str(checkpoint.path), notice)
        return kwargs

    def kwargs(self, checkpoint: Checkpoint, overrides: Mapping[str, Any] | None = None,
               notice: Notice | None = None) -> dict[str, Any]:
        """:meth:`checkpoint_kwargs` bounded (:func:`check_kwargs`), then ``overrides`` (``--arch-kwargs``)."""
        kwargs = check_kwargs(self.checkpoint_kwargs(checkpoint, notice), str(checkpoint.path))
        kwargs.update(overrides or {})
        return kwargs

    def build(self, checkpoint: Checkpoint, kwargs: Mapping[str, Any], notice: Notice | None = None) -> nn.Module:
        """The model for ``checkpoint`` built with ``kwargs`` (from :meth:`kwargs`), weights not yet loaded."""
        factory = self.factory()
        source = str(checkpoint.path)
        model = checked_build(factory, kwargs, source, self.architecture)
        if self.infers_num_classes and "num_classes" not in kwargs:
            state = match_state(model.state_dict().keys(), checkpoint.state_dict, checkpoint.path,
                                notice=lambda _: None)
            n_classes = infer_num_classes(model, state)
            if n_classes is not None:
                model = checked_build(factory, {**kwargs, "num_classes": n_classes}, source, self.architecture)
        return tensor_output(model) if self.wants_tensor_output else model

    # ------------------------------------------------------------------------------------- preprocessing

    def model_preprocessing(self, model: nn.Module) -> Preprocessing | None:
        """The evaluation preprocessing the family's library records for ``model`` (None: unknown)."""
        return None

    def carried_preprocessing(self, checkpoint: Checkpoint, model: nn.Module) -> Preprocessing | None:
        """What the model carries: the checkpoint's own (``preprocessing``, an HF image-processor config), else
        :meth:`model_preprocessing`."""
        if checkpoint.preprocessing is not None:
            return checkpoint.preprocessing
        return self.model_preprocessing(model)

    def fallback_preprocessing(self, checkpoint: Checkpoint) -> Preprocessing | None:
        """Used, with a notice naming :attr:`fallback_from`, when nothing is carried and no size is given."""
        return None
