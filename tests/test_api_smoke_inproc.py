def test_basic_flow(new_tenant, api_for, aws_endpoint):
    import boto3
    t = new_tenant()
    api = api_for(t.admin_token)
    r = api.get("/providers")
    assert r.status_code == 200, r.body
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="acme-data")
    r = api.post("/authorizations", {"provider": "amazon_s3", "method": "access_keys", "label": "k",
        "credentials": {"access_key_id": "AKIAABCDEFGHIJKLMNOP", "secret_access_key": "CANARYsecret1234567890"}})
    assert r.status_code == 201, r.body
    auth_id = r.json["data"]["id"]
    r = api.post("/jobs", {"provider": "amazon_s3", "job_type": "import", "workflow": "s3_file_import",
        "authorization_id": auth_id, "label": "imp", "config": {"bucket": "acme-data"}})
    assert r.status_code == 201, r.body
    print(r.json)
    r = api.get("/jobs")
    assert r.status_code == 200, r.body
    print(r.json)
    r = api.delete(f"/authorizations/{auth_id}")
    assert r.status_code == 409, r.body
    print(r.json)
    r = api_for("bogus").get("/jobs")
    print(r.status_code, r.body)
    r = api_for(None).get("/jobs")
    print(r.status_code, r.body)
