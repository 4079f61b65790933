import basic
