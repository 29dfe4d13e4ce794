package com.example;

/** Checked exception declared by {@link UserService#getUser(Long)}. */
public class UserNotFoundException extends Exception {
    private static final long serialVersionUID = 1L;

    public UserNotFoundException(String message) {
        super(message);
    }
}
