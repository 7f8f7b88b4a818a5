"""API errors with Octavia's status codes and faultstring templates."""

from __future__ import annotations


class APIError(Exception):
    """An error the API answers with ``{"faultcode", "faultstring", "debuginfo"}``."""

    status = 500
    template = "An unknown exception occurred."
    # Octavia raises some errors while routing (a pecan hook or lookup), before its
    # controller: pecan answers those, with another body (see body()).
    while_routing = False

    def __init__(self, message: str | None = None, **kwargs: object) -> None:
        self.message = message if message is not None else self.template.format(**kwargs)
        super().__init__(self.message)

    def body(self) -> dict[str, object]:
        if self.while_routing:
            # pecan's JSON; the title is that of webob's client error class, which
            # Octavia's exceptions derive from whatever their code.
            return {"code": self.status, "title": "Bad Request", "description": self.message}
        return fault_body(self.status, self.message)


class BadRequest(APIError):
    status = 400
    template = "{detail}"


class PagingError(BadRequest):
    """A limit or sort direction Octavia's pagination hook refuses."""

    while_routing = True


class ValidationError(BadRequest):
    template = "Validation failure: {detail}"


class InvalidInput(BadRequest):
    template = "Invalid input for field/attribute {field}. Value: '{value}'. {reason}"


class UnknownAttribute(BadRequest):
    template = "Unknown attribute for argument {argument}: {attribute}"


class InvalidOption(BadRequest):
    template = "{value} is not a valid option for {option}"


class DisabledOption(BadRequest):
    template = "The selected {option} is not allowed in this deployment: {value}"


class InvalidFilterArgument(BadRequest):
    template = "One or more arguments are either duplicate or invalid"


class CertificateRetrieval(BadRequest):
    template = "Could not retrieve certificate: {ref} ({reasons})"


class InvalidSubresource(BadRequest):
    template = "{resource} {id} not found."


class NotAuthorized(APIError):
    status = 401
    template = "Not authorized."


class PolicyForbidden(APIError):
    status = 403
    template = "Policy does not allow this request to be performed."


class QuotaExceeded(APIError):
    status = 403
    template = "Quota has been met for resources: {resource}"


class NotFound(APIError):
    status = 404
    template = "{resource} {id} not found."


class ParentNotFound(NotFound):
    """A parent named in the path (the pool of /pools/{id}/members) that does not exist."""

    while_routing = True


class MethodNotAllowed(APIError):
    status = 405
    template = "Method not allowed."


class Conflict(APIError):
    status = 409
    template = "{detail}"


class DuplicateMember(Conflict):
    template = "Another member on this pool is already using ip {address} on protocol_port {port}"


class ImmutableObject(Conflict):
    template = "{resource} {id} is immutable and cannot be updated."


class LBPendingState(Conflict):
    template = "Invalid state {state} of loadbalancer resource {id}"


class ProviderNotImplemented(APIError):
    status = 501
    template = "Provider '{provider}' does not support a requested action: {detail}"


class ProviderUnsupportedOption(APIError):
    status = 501
    template = "Provider '{provider}' does not support a requested option: {detail}"


class ProviderNotFound(APIError):
    status = 501
    template = "Provider '{provider}' was not found."


def fault_body(status: int, message: str) -> dict[str, object]:
    return {
        "faultcode": "Client" if 400 <= status < 500 else "Server",
        "faultstring": message,
        "debuginfo": None,
    }
