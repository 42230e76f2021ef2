"""SASL on the wire (SaslHandshake, SaslAuthenticate) and SCRAM user management
(DescribeUserScramCredentials, AlterUserScramCredentials). The exchange itself is the sans-IO
SaslServer of the connection's session (eventyard.security.sasl)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventyard.broker.handlers import handles
from eventyard.protocol.error_codes import ErrorCode
from eventyard.protocol.messages.alter_user_scram_credentials_request import AlterUserScramCredentialsRequest
from eventyard.protocol.messages.alter_user_scram_credentials_response import (
    AlterUserScramCredentialsResponse,
    AlterUserScramCredentialsResult,
)
from eventyard.protocol.messages.describe_user_scram_credentials_request import (
    DescribeUserScramCredentialsRequest,
)
from eventyard.protocol.messages.describe_user_scram_credentials_response import (
    CredentialInfo,
    DescribeUserScramCredentialsResponse,
    DescribeUserScramCredentialsResult,
)
from eventyard.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from eventyard.protocol.messages.sasl_authenticate_response import SaslAuthenticateResponse
from eventyard.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from eventyard.protocol.messages.sasl_handshake_response import SaslHandshakeResponse
from eventyard.security.acl import Operation, ResourceType
from eventyard.security.credentials import Mechanism

if TYPE_CHECKING:
    from eventyard.broker.broker import Broker, RequestContext
    from eventyard.broker.session import Session


@handles(17, 0, 1)
async def sasl_handshake(
    broker: Broker, ctx: RequestContext, request: SaslHandshakeRequest
) -> SaslHandshakeResponse:
    session = ctx.session
    if session.sasl is None:
        session.close_after_response = True
        return SaslHandshakeResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, mechanisms=[])
    error, mechanisms = session.sasl.handshake(request.mechanism)
    if error != ErrorCode.NONE:
        session.close_after_response = True
    elif ctx.version == 0:
        session.raw_tokens = True  # v0: the tokens follow as bare frames, not SaslAuthenticate
    return SaslHandshakeResponse(error_code=error, mechanisms=mechanisms)


@handles(36, 0, 2)
async def sasl_authenticate(
    broker: Broker, ctx: RequestContext, request: SaslAuthenticateRequest
) -> SaslAuthenticateResponse:
    session = ctx.session
    if session.sasl is None:
        session.close_after_response = True
        return SaslAuthenticateResponse(
            error_code=ErrorCode.ILLEGAL_SASL_STATE, error_message="not a SASL listener"
        )
    step = session.sasl.authenticate(request.auth_bytes)
    if step.error_code != ErrorCode.NONE:
        session.close_after_response = True
    elif step.done:
        session.principal = f"User:{step.principal}"
    return SaslAuthenticateResponse(
        error_code=step.error_code,
        error_message=step.error_message,
        auth_bytes=step.challenge,
        session_lifetime_ms=step.session_lifetime_ms,
    )


@handles(50, 0, 0)
async def describe_user_scram_credentials(
    broker: Broker, ctx: RequestContext, request: DescribeUserScramCredentialsRequest
) -> DescribeUserScramCredentialsResponse:
    if not broker.authorize(ctx, Operation.DESCRIBE, ResourceType.CLUSTER):
        return DescribeUserScramCredentialsResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    users = [u.name for u in request.users] if request.users else None
    described = broker.credentials.describe(users, broker.now_ms())
    return DescribeUserScramCredentialsResponse(
        results=[
            DescribeUserScramCredentialsResult(
                user=d.user,
                error_code=d.error_code,
                error_message=d.error_message,
                credential_infos=[CredentialInfo(mechanism=int(m), iterations=i) for m, i in d.credentials],
            )
            for d in described
        ]
    )


@handles(51, 0, 0)
async def alter_user_scram_credentials(
    broker: Broker, ctx: RequestContext, request: AlterUserScramCredentialsRequest
) -> AlterUserScramCredentialsResponse:
    if not broker.authorize(ctx, Operation.ALTER, ResourceType.CLUSTER):
        names = [d.name for d in request.deletions] + [u.name for u in request.upsertions]
        return AlterUserScramCredentialsResponse(
            results=[
                AlterUserScramCredentialsResult(user=u, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
                for u in dict.fromkeys(names)
            ]
        )
    results = broker.credentials.alter(request.deletions, request.upsertions, broker.now_ms())
    deleted = {d.name for d in request.deletions}
    losers = {r.user for r in results if r.error_code == ErrorCode.NONE and r.user in deleted}
    if losers and broker.network is not None:
        # Kafka leaves them open until they re-authenticate (connections.max.reauth.ms); here a
        # deleted credential stops working at once, on connections already authenticated too.
        broker.network.close_connections(
            lambda session: _lost_credential(broker, session, losers), "its SCRAM credential was deleted"
        )
    return AlterUserScramCredentialsResponse(
        results=[
            AlterUserScramCredentialsResult(
                user=r.user, error_code=r.error_code, error_message=r.error_message
            )
            for r in results
        ]
    )


def _lost_credential(broker: Broker, session: Session, users: set[str]) -> bool:
    """Did the session authenticate with a credential that is gone? SCRAM: the user has none left
    for the session's mechanism; PLAIN (checked against any of the user's credentials): none at all."""
    sasl = session.sasl
    if sasl is None or not sasl.authenticated or sasl.principal not in users:
        return False
    left = broker.credentials.credentials(sasl.principal)
    mechanism = Mechanism.from_sasl_name(sasl.mechanism or "")
    return not any(c.mechanism is mechanism for c in left) if mechanism is not None else not left
