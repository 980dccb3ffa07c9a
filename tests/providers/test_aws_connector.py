"""The AWS connector base (chalicelib/providers/aws_connector.py): the credentials models and
the check and options S3, Kinesis and SQS share. moto in-process (tests/providers/conftest.py);
each provider's own tests cover its resource calls."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from botocore.exceptions import ClientError
from moto.core import set_initial_no_auth_action_count
from pydantic import Field, ValidationError

from chalicelib.domain.catalog import JobType, ProviderSpec, WorkflowSpec
from chalicelib.domain.models import HealthStatus
from chalicelib.providers import aws_auth
from chalicelib.providers.aws_auth import AccessKeysBase, AssumeRoleBase, AwsSession
from chalicelib.providers.aws_connector import AwsConnector, credentials_models
from chalicelib.providers.base import Option, ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.kinesis import PROVIDER as KINESIS
from chalicelib.providers.s3 import PROVIDER as S3
from chalicelib.providers.sqs import PROVIDER as SQS

Widget = Annotated[str, Field(pattern=r"^w-[a-z]+$")]
Keys, Role = credentials_models(__name__, "widget", Widget, "a widget")
KEYS = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "x" * 40}


def test_the_credentials_models_are_the_shared_fields_plus_an_optional_resource() -> None:
    keys, role = Keys.model_json_schema(), Role.model_json_schema()
    assert (keys["title"], role["title"]) == ("AccessKeys", "AssumeRole")
    assert list(keys["properties"]) == [*AccessKeysBase.model_fields, "widget"]
    assert list(role["properties"]) == [*AssumeRoleBase.model_fields, "widget"]
    assert {"access_key_id", "secret_access_key", "role_arn", "external_id"} <= {*keys["properties"],
                                                                              *role["properties"]}
    assert keys["description"] == "IAM access keys (aws_auth), and a widget the health check may verify."
    assert keys["properties"]["widget"]["description"] == "Optional: a widget the health check must be able to reach"
    assert Keys.__module__ == __name__
    # the resource is optional, validated by its own type, and unknown fields are still refused
    assert Keys.model_validate(KEYS).widget is None
    assert Keys.model_validate({**KEYS, "widget": "w-blue"}).widget == "w-blue"
    with pytest.raises(ValidationError, match="widget"):
        Keys.model_validate({**KEYS, "widget": "blue"})
    with pytest.raises(ValidationError, match="bucket"):
        Keys.model_validate({**KEYS, "bucket": "w-blue"})


def test_s3_kinesis_and_sqs_are_the_one_connector() -> None:
    for provider, resource in ((S3, "bucket"), (KINESIS, "stream_name"), (SQS, "queue_url")):
        assert isinstance(provider, AwsConnector) and provider.resource == resource
        for method in provider.spec.auth_methods:
            assert resource in method.credentials_model.model_fields


class Widgets(AwsConnector):
    """A connector whose resource answers what the test says."""

    spec = ProviderSpec(id="widgets", name="Widgets", description="", auth_methods=aws_auth.auth_methods(Keys, Role),
                        workflows=(WorkflowSpec("w", "W", JobType.EXPORT, "", aws_auth.METHODS, object,
                                                option_fields=("widget",)),))
    resource = "widget"

    def __init__(self, answer: Exception | str) -> None:
        self.answer = answer
        self.reached: list[str] = []

    def reach(self, sess: AwsSession, name: str) -> str:
        self.reached.append(name)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def resource_error(self, sess: AwsSession, exc: Exception, name: str) -> ProviderError:
        return aws_auth.classify(exc, f"widget {name!r}", missing=("NoSuchWidget",), field="widget")

    def list_options(self, sess: AwsSession, field: str, params: dict[str, str]) -> list[Option]:
        return [Option(value=self.reach(sess, "all"), label="all")]

    def options_error(self, sess: AwsSession, exc: Exception, field: str, params: dict[str, str]) -> ProviderError:
        return sess.error(exc, "the widget list")


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "GetWidget")


def _keys(**kw: Any) -> Any:
    return Keys.model_validate({**KEYS, **kw})


def test_a_check_without_a_resource_reaches_the_account_only(aws: None) -> None:
    widgets = Widgets("widget 'w-x'")
    result = widgets.check("access_keys", _keys(), {}, CallCounter())
    assert result.status is HealthStatus.HEALTHY and result.reason == "reaches AWS account 123456789012"
    assert result.resources == {} and widgets.reached == []


def test_a_check_reaches_the_resource_of_the_config_before_the_credentials(aws: None) -> None:
    widgets = Widgets("widget 'w-config' (ready)")
    result = widgets.check("access_keys", _keys(widget="w-creds"), {"widget": "w-config"})
    assert result.status is HealthStatus.HEALTHY
    assert result.reason == "reaches AWS account 123456789012 and widget 'w-config' (ready)"
    assert result.resources == {"widget": "w-config"} and result.provider_account == "123456789012"
    assert widgets.reached == ["w-config"]


@pytest.mark.parametrize(("answer", "reason", "blamed"), [
    (_client_error("NoSuchWidget", 404), "widget 'w-x' does not exist (NoSuchWidget)", "widget"),
    (ProviderError("widget 'w-x' is being deleted"), "widget 'w-x' is being deleted", None),
])
def test_an_unusable_resource_is_an_unhealthy_result(aws: None, answer: Exception, reason: str,
                                                     blamed: str | None) -> None:
    result = Widgets(answer).check("access_keys", _keys(widget="w-x"), {})
    assert result.status is HealthStatus.UNHEALTHY and result.reason == reason
    assert result.provider_account == "123456789012" and result.resources == {}
    # AWS refusing the resource blames its field; a resource reached but unusable blames none
    assert result.resource == blamed


@pytest.mark.parametrize("answer", [_client_error("ThrottlingException", 400),
                                    ProviderError("later", transient=True)])
def test_a_transient_failure_is_raised_not_concluded(aws: None, answer: Exception) -> None:
    with pytest.raises(ProviderError) as caught:
        Widgets(answer).check("access_keys", _keys(widget="w-x"), {})
    assert caught.value.transient


def test_options_list_an_option_field_and_refuse_any_other(aws: None) -> None:
    counter = CallCounter()
    assert Widgets("w-all").options("access_keys", _keys(), "w", "widget", {}, counter) == [
        Option(value="w-all", label="all")]
    with pytest.raises(ProviderError, match="field 'colour' has no live options") as caught:
        Widgets("w-all").options("access_keys", _keys(), "w", "colour", {}, counter)
    assert caught.value.field == "field"
    with pytest.raises(ProviderError, match="the widget list: NoSuchWidget") as caught:
        Widgets(_client_error("NoSuchWidget", 404)).options("access_keys", _keys(), "w", "widget", {}, counter)
    assert not caught.value.transient


def test_refused_credentials_win_over_a_missing_bucket_reached_beside_them(aws: None) -> None:
    # GIVEN S3 keys IAM does not know, naming a bucket that does not exist
    creds = S3.spec.method("access_keys").credentials_model.model_validate({**KEYS, "bucket": "no-such-bucket"})
    counter = CallCounter()

    @set_initial_no_auth_action_count(0)
    def check_with_auth_enforced() -> Any:
        return S3.check("access_keys", creds, {}, counter)

    # WHEN they are checked
    result = check_with_auth_enforced()

    # THEN the reason is the credentials', not the bucket's...
    assert result.status is HealthStatus.UNHEALTHY
    assert result.reason == "the access key id is not valid (InvalidClientTokenId)"
    assert result.resource is None and result.provider_account is None
    # ...though HeadBucket was sent beside STS, finished, and is counted (the refusal's cost)
    assert counter.counts == {"sts.GetCallerIdentity": 1, "s3.HeadBucket": 1}
    # control: with IAM not enforced, the same check blames the bucket at its field
    counter = CallCounter()
    found = S3.check("access_keys", creds, {}, counter)
    assert found.status is HealthStatus.UNHEALTHY and found.resource == "bucket"
    assert "does not exist" in (found.reason or "")
    assert counter.counts == {"sts.GetCallerIdentity": 1, "s3.HeadBucket": 1}
