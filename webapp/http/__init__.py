"""Request plumbing shared by the pages and the JSON API: API authentication and JSON errors, security
headers, the health check, object access for a user, query-string parameters and the navigation context.

Nothing here writes domain rows; views call services (webapp/services.py) for that.
"""
