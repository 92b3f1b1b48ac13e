"""Errors of manifest loading: which file, which document, which field.

    InvalidResource (orloj_ray.errors)
    ├── ManifestError    one problem: source, index (0-based document), field
    └── ManifestErrors   every problem of a batch (``load_path``): nothing of it may be applied

``str(ManifestError)`` reads ``<file>: document <n>: <field>: <what is wrong>`` with ``n``
counted from 1 for people; the ``field`` part is left out when the message already starts with
it (``spec.model_ref is required``), the document part for problems of a whole file.
"""

from __future__ import annotations

from orloj_ray.errors import InvalidResource


class ManifestError(InvalidResource):
    def __init__(self, detail: str, *, source: str, index: int | None = None, field: str | None = None):
        self.detail = detail
        self.source = source
        self.index = index
        parts = [source]
        if index is not None:
            parts.append(f"document {index + 1}")
        if field and not detail.startswith(field):
            parts.append(field)
        super().__init__(": ".join([*parts, detail]), field=field)

    def __reduce__(self):
        return (_rebuild_error, (self.detail, self.source, self.index, self.field))


def _rebuild_error(detail: str, source: str, index: int | None, field: str | None) -> ManifestError:
    return ManifestError(detail, source=source, index=index, field=field)


class ManifestErrors(InvalidResource):
    def __init__(self, errors: list[ManifestError]):
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))

    def __reduce__(self):
        return (ManifestErrors, (self.errors,))
