from locust import HttpUser, task

class Basic(HttpUser):
    @task
    def index(self):
        self.client.get("/")
