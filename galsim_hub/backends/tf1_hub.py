"""Read what a TF1 Hub-format module (``tfhub_module.pb``) says about itself.

``tensorflow_hub.load`` opens such modules through their signatures only: the messages the
TF1 exporter attached (upstream galsim-hub attached ``stamp_size`` and ``pixel_size``) are
not exposed. They are still in ``saved_model.pb``, as serialized ``ModuleAttachment``
protos in the collection ``hub_module_attachments``; this module reads them back without
the TF1-only proto modules that tensorflow-hub 0.16 no longer ships.
"""

from __future__ import annotations

import os
from pathlib import Path

TF1_MODULE_FILE = "tfhub_module.pb"
ATTACHMENT_COLLECTION = "hub_module_attachments"
_ATTACHMENT_CLASS = None


def is_tf1_hub_module(model_dir: str | os.PathLike) -> bool:
    """Whether ``model_dir`` holds a TF1 Hub-format module."""
    return (Path(model_dir) / TF1_MODULE_FILE).is_file()


def _attachment_class():
    """Build the ``ModuleAttachment {string key = 1; bytes value = 2;}`` message class."""
    global _ATTACHMENT_CLASS
    if _ATTACHMENT_CLASS is None:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        file_proto = descriptor_pb2.FileDescriptorProto(
            name="galsim_hub_module_attachment.proto", package="galsim_hub_tf1", syntax="proto3"
        )
        message = file_proto.message_type.add(name="ModuleAttachment")
        message.field.add(name="key", number=1, type=9, label=1)  # TYPE_STRING, LABEL_OPTIONAL
        message.field.add(name="value", number=2, type=12, label=1)  # TYPE_BYTES
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file_proto)
        descriptor = pool.FindMessageTypeByName("galsim_hub_tf1.ModuleAttachment")
        _ATTACHMENT_CLASS = message_factory.GetMessageClass(descriptor)
    return _ATTACHMENT_CLASS


def serialize_attachment(key: str, value: bytes) -> bytes:
    """Serialize one ``ModuleAttachment`` (used to write test modules of the TF1 format)."""
    return _attachment_class()(key=key, value=value).SerializeToString()


def read_attachments(model_dir: str | os.PathLike) -> dict[str, bytes]:
    """Return the attached messages of the default (tag-less) graph of a TF1 Hub module.

    Parameters
    ----------
    model_dir : str or os.PathLike
        Directory with ``saved_model.pb`` and ``tfhub_module.pb``.

    Returns
    -------
    dict
        Attachment key -> serialized message bytes (empty when the module attached none).
    """
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(model_dir) / "saved_model.pb").read_bytes())
    attachments: dict[str, bytes] = {}
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags):
            continue
        collection = meta_graph.collection_def.get(ATTACHMENT_COLLECTION)
        if collection is None:
            continue
        for raw in collection.bytes_list.value:
            attachment = _attachment_class().FromString(raw)
            attachments[attachment.key] = attachment.value
    return attachments


def attached_geometry(model_dir: str | os.PathLike) -> dict:
    """Read the ``stamp_size`` and ``pixel_size`` messages upstream galsim-hub attached.

    Returns
    -------
    dict
        ``{"stamp_size": int, "pixel_scale": float}`` for the keys that are present.
    """
    import tensorflow as tf

    attachments = read_attachments(model_dir)
    geometry: dict[str, float] = {}
    if "stamp_size" in attachments:
        geometry["stamp_size"] = int(tf.train.Int64List.FromString(attachments["stamp_size"]).value[0])
    if "pixel_size" in attachments:
        pixel_size = tf.train.FloatList.FromString(attachments["pixel_size"]).value[0]
        geometry["pixel_scale"] = float(f"{pixel_size:.7g}")  # stored as float32
    return geometry
