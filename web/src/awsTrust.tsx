import { api, type AuthMethod } from "./api";
import { ErrorBox, useLoad } from "./ui";

/** For a method whose external id Switchyard generates (AWS assume role): the id and the
 * trust policy to put on the role, since the form no longer asks for one. */
export function AwsTrustPanel({ method }: { method: AuthMethod }) {
  if (!(method.generated_fields ?? []).includes("external_id")) return null;
  return <AwsTrustDetails />;
}

function AwsTrustDetails() {
  const { data, error } = useLoad(() => api.awsTrust(), []);
  if (error) return <ErrorBox error={error} />;
  if (!data) return <p class="muted small">Loading the external id…</p>;
  return (
    <div class="panel" data-testid="aws-trust">
      <p class="small">The role's trust policy must let Switchyard's AWS account assume it with your account's external id:</p>
      <p class="small">External id: <code data-testid="aws-external-id">{data.external_id}</code></p>
      <pre class="small">{JSON.stringify(data.trust_policy, null, 2)}</pre>
    </div>
  );
}
