def test_private_message_round_trip(api, app_):
    client = api.register(app_, "device-1")
    job = api.new_job(app_)
    api.send(app_, job, client, "hello")
    [message] = api.receive(client, 1)
    assert message["content"] == "hello"
