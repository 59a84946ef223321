"""The Flower-free core of flonnx: definitions, content ids, lineage, registry, adapters, interpreter."""
