"""`grille ui`: the campaign in the browser, served on the loopback address only.

`app` builds the web application (routes, templates, errors as French pages), `security`
guards it (secret token then cookie, Host, CSRF, body size, headers, downloads), `views`
are thin pages over the library (its reads are named functions of `pipeline.state`),
`server` finds a free port and runs uvicorn.
"""
