print("basic")
