"""A city's sign-in methods: SAML metadata (upload or pinned URL), OIDC IdPs, mapping rules.

* ``/admin/tenants/<id>/new-idp/saml`` and ``/admin/tenants/<id>/idps/<idp>/saml``: one form
  whose metadata is either an uploaded file or an https address with one to three pinned
  signing certificate fingerprints (a second one added ahead of a certificate change, the
  old one removed after it);
* ``/admin/tenants/<id>/new-idp/oidc`` and ``/admin/tenants/<id>/idps/<idp>/oidc``: an OIDC
  IdP by its issuer (the operations fetch and check its discovery document) with the client
  id and secret the IdP issued (sealed before it is stored);
* ``/admin/tenants/<id>/idps/<idp>/mapping``: the mapping rules as YAML, with "Explain" (a dry
  run on a pasted or uploaded sample response, shown on the same page) and "Save".

Every save stages a version and leads to its page (diff, test link, Activate).
"""

from __future__ import annotations

from typing import Any

import yaml
from flask import request
from flask.typing import ResponseReturnValue

from broker.admin.console import blueprint
from broker.admin.console.web import base, done, ops, principal, problem_list, render
from broker.admin.errors import AdminError, BadRequest, NotFound

MAX_UPLOAD = 1024 * 1024
MAX_YAML = 128 * 1024
#: What the operations call a field (BadRequest.field, or a validator path containing it) -> the form's field.
FIELDS = {"idp_id": "idp_id", "names": "names_fi", "xml": "metadata_file", "url": "url", "pins": "pin_1",
          "entity_id": "entity_id", "comment": "comment", "issuer": "issuer", "client_id": "client_id",
          "client_secret": "client_secret", "mapping": "mapping", "sample": "sample", "metadata": "metadata_file",
          "signing_cert_sha256": "pin_1"}


def _find_idp(doc: dict[str, Any], idp_id: str) -> dict[str, Any] | None:
    return next((i for i in doc.get("identity_providers") or [] if isinstance(i, dict) and i.get("id") == idp_id),
                None)


def _names_from_form() -> dict[str, str] | None:
    names = {lang: request.form.get(f"names_{lang}", "").strip() for lang in ("fi", "sv", "en")}
    return names if any(names.values()) else None


def _field_errors(exc: AdminError) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A refusal as ``(errors by form field, problems for the summary)``."""
    if isinstance(exc, BadRequest):
        field = FIELDS.get(exc.field.split(".")[0].split(":")[0].strip(), "")
        if field:
            return {field: {"expected": exc.expected}}, []
    return {}, problem_list(exc, {k: v for k, v in FIELDS.items() if k in ("metadata", "mapping", "issuer",
                                                                          "signing_cert_sha256", "names")})


def _refusal(exc: AdminError) -> tuple[dict[str, Any], list[dict[str, str]], int]:
    if exc.status not in (400, 409, 422):
        raise exc
    errors, problems = _field_errors(exc)
    if exc.status == 409:
        problems = [{"field": "", "text": exc.description}]
    return errors, problems, exc.status


def _staged(result: dict[str, Any]) -> ResponseReturnValue:
    return done(f"{base()}/admin/versions/{result['version']['id']}", "staged")


# -- SAML -----------------------------------------------------------------------------------------

@blueprint.route("/tenants/<tenant_id>/new-idp/saml", methods=["GET", "POST"])
def saml_new(tenant_id: str) -> ResponseReturnValue:
    return _saml(tenant_id, None)


@blueprint.route("/tenants/<tenant_id>/idps/<idp_id>/saml", methods=["GET", "POST"])
def saml_existing(tenant_id: str, idp_id: str) -> ResponseReturnValue:
    return _saml(tenant_id, idp_id)


def _saml(tenant_id: str, idp_id: str | None) -> ResponseReturnValue:
    p = principal()
    operations = ops()
    info = operations.tenant(p, tenant_id)
    idp = _find_idp(info["document"], idp_id) if idp_id else None
    if idp_id and (idp is None or idp.get("type") != "saml"):
        raise NotFound(f"no SAML identity provider {idp_id}")
    found = (idp or {}).get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    pins = metadata.get("signing_cert_sha256") or []
    pins = [pins] if isinstance(pins, str) else list(pins)
    values: dict[str, Any] = {"idp_id": idp_id or "", "names": (idp or {}).get("names") or {},
                              "source": "url" if "url" in metadata else "upload", "url": metadata.get("url", ""),
                              "entity_id": (idp or {}).get("entity_id", ""), "pins": (pins + ["", "", ""])[:3],
                              "comment": ""}
    errors: dict[str, Any] = {}
    problems: list[dict[str, str]] = []
    status = 200
    if request.method == "POST":
        form = request.form
        values.update({"idp_id": idp_id or form.get("idp_id", "").strip(), "names": _names_from_form() or {},
                       "source": form.get("source", "upload"), "url": form.get("url", "").strip(),
                       "entity_id": form.get("entity_id", "").strip(),
                       "pins": [form.get(f"pin_{i}", "").strip() for i in (1, 2, 3)],
                       "comment": form.get("comment", "")})
        errors = _check_saml_form(values, is_new=idp is None)
        if not errors:
            try:
                result = _save_saml(operations, p, tenant_id, values)
            except AdminError as exc:
                errors, problems, status = _refusal(exc)
            else:
                return _staged(result)
        status = status if problems or not errors else 400
    return render("idp_saml.html", status, info=info, idp=idp, values=values, errors=errors, problems=problems,
                  nav="home")


def _check_saml_form(values: dict[str, Any], *, is_new: bool) -> dict[str, str]:
    errors: dict[str, Any] = {}
    if is_new and not values["idp_id"]:
        errors["idp_id"] = "form.missing"
    if is_new and not all(values["names"].get(lang) for lang in ("fi", "sv", "en")):
        errors["names_fi"] = "form.names_missing"
    if values["source"] == "url":
        if not values["url"]:
            errors["url"] = "form.missing"
        if not any(values["pins"]):
            errors["pin_1"] = "form.pin_missing"
    elif values["source"] == "upload":
        upload = request.files.get("metadata_file")
        if upload is None or not upload.filename:
            errors["metadata_file"] = "form.file_missing"
        else:
            raw = upload.read(MAX_UPLOAD + 1)
            if len(raw) > MAX_UPLOAD:
                errors["metadata_file"] = "form.file_too_large"
            else:
                try:
                    values["xml"] = raw.decode("utf-8-sig")
                except UnicodeDecodeError:
                    errors["metadata_file"] = "form.file_not_text"
                if not errors.get("metadata_file") and not values["xml"].strip():
                    errors["metadata_file"] = "form.file_empty"
    else:
        errors["source"] = "form.missing"
    return errors


def _save_saml(operations: Any, p: Any, tenant_id: str, values: dict[str, Any]) -> dict[str, Any]:
    names = values["names"] if values["names"] else None
    if values["source"] == "upload":
        result: dict[str, Any] = operations.upload_idp_metadata(p, tenant_id, values["idp_id"], values["xml"],
                                                                values["comment"], names=names)
        return result
    pins = [pin for pin in values["pins"] if pin]
    result = operations.set_idp_metadata_url(p, tenant_id, values["idp_id"], values["url"], pins,
                                             values["comment"], entity_id=values["entity_id"] or None, names=names)
    return result


# -- OIDC -----------------------------------------------------------------------------------------

@blueprint.route("/tenants/<tenant_id>/new-idp/oidc", methods=["GET", "POST"])
def oidc_new(tenant_id: str) -> ResponseReturnValue:
    return _oidc(tenant_id, None)


@blueprint.route("/tenants/<tenant_id>/idps/<idp_id>/oidc", methods=["GET", "POST"])
def oidc_existing(tenant_id: str, idp_id: str) -> ResponseReturnValue:
    return _oidc(tenant_id, idp_id)


def _oidc(tenant_id: str, idp_id: str | None) -> ResponseReturnValue:
    p = principal()
    operations = ops()
    info = operations.tenant(p, tenant_id)
    idp = _find_idp(info["document"], idp_id) if idp_id else None
    if idp_id and (idp is None or idp.get("type") != "oidc"):
        raise NotFound(f"no OIDC identity provider {idp_id}")
    values: dict[str, Any] = {"idp_id": idp_id or "", "names": (idp or {}).get("names") or {},
                              "issuer": (idp or {}).get("issuer", ""), "client_id": (idp or {}).get("client_id", ""),
                              "comment": ""}
    errors: dict[str, Any] = {}
    problems: list[dict[str, str]] = []
    status = 200
    if request.method == "POST":
        form = request.form
        values.update({"idp_id": idp_id or form.get("idp_id", "").strip(), "names": _names_from_form() or {},
                       "issuer": form.get("issuer", "").strip(), "client_id": form.get("client_id", "").strip(),
                       "comment": form.get("comment", "")})
        secret = form.get("client_secret", "")
        for field in ("idp_id", "issuer", "client_id"):
            if not values[field]:
                errors[field] = "form.missing"
        if idp is None and not secret:
            errors["client_secret"] = "form.missing"
        if idp is None and not all(values["names"].get(lang) for lang in ("fi", "sv", "en")):
            errors["names_fi"] = "form.names_missing"
        if not errors:
            try:
                result = operations.add_oidc_idp(p, tenant_id, values["idp_id"], values["issuer"],
                                                 values["client_id"], secret or None, values["names"] or None,
                                                 values["comment"])
            except AdminError as exc:
                errors, problems, status = _refusal(exc)
            else:
                return _staged(result)
        status = status if problems or not errors else 400
    return render("idp_oidc.html", status, info=info, idp=idp, values=values, errors=errors, problems=problems,
                  nav="home")


# -- mapping rules ----------------------------------------------------------------------------------

class _NoAliases(yaml.SafeLoader):
    """YAML without anchors and aliases: a few lines of aliases can expand to gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted", event.start_mark)
        return super().compose_node(parent, index)


def parse_yaml(text: str) -> tuple[Any, Any]:
    """``(value, None)`` or ``(None, error message key or text)``."""
    if len(text) > MAX_YAML:
        return None, "form.yaml_too_large"
    try:
        return yaml.load(text, Loader=_NoAliases), None  # noqa: S506 - a SafeLoader without aliases
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return None, {"text": f"YAML: {exc.problem or 'not valid'}{where}"}
    except (yaml.YAMLError, RecursionError, ValueError):
        return None, "form.yaml_invalid"


@blueprint.route("/tenants/<tenant_id>/idps/<idp_id>/mapping", methods=["GET", "POST"])
def mapping_page(tenant_id: str, idp_id: str) -> ResponseReturnValue:
    p = principal()
    operations = ops()
    info = operations.tenant(p, tenant_id)
    idp = _find_idp(info["document"], idp_id)
    if idp is None:
        raise NotFound(f"no identity provider {idp_id}")
    current = idp.get("mapping") if isinstance(idp.get("mapping"), dict) else {}
    values = {"mapping": yaml.safe_dump(current, allow_unicode=True, sort_keys=False) if current else "",
              "sample": "", "comment": ""}
    errors: dict[str, Any] = {}
    problems: list[dict[str, str]] = []
    explained = None
    status = 200
    if request.method == "POST":
        action = request.form.get("action", "explain")
        values.update({k: request.form.get(k, "") for k in ("mapping", "sample", "comment")})
        mapping, problem = parse_yaml(values["mapping"])
        if problem:
            errors["mapping"] = problem
        elif not isinstance(mapping, dict):
            errors["mapping"] = "form.mapping_not_object"
        sample = values["sample"].encode("utf-8")
        upload = request.files.get("sample_file")
        if upload is not None and upload.filename:
            sample = upload.read(MAX_UPLOAD + 1)
        if action == "explain" and not sample.strip():
            errors["sample"] = "form.sample_missing"
        if not errors:
            try:
                if action == "save":
                    result = operations.set_mapping(p, tenant_id, idp_id, mapping, values["comment"])
                    return _staged(result)
                explained = operations.explain(p, tenant_id, idp_id, sample, mapping=mapping)
            except AdminError as exc:
                errors, problems, status = _refusal(exc)
        status = status if problems or not errors else 400
    return render("mapping.html", status, info=info, idp=idp, values=values, errors=errors, problems=problems,
                  explained=explained, nav="home")
