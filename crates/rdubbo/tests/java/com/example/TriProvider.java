package com.example;

import org.apache.dubbo.config.ApplicationConfig;
import org.apache.dubbo.config.ProtocolConfig;
import org.apache.dubbo.config.RegistryConfig;
import org.apache.dubbo.config.ServiceConfig;
import org.apache.dubbo.config.bootstrap.DubboBootstrap;

/**
 * Exports UserService (JavaProvider's implementation) over Triple (tri://) on
 * 127.0.0.1:&lt;port&gt; and prints "READY &lt;port&gt;"; Dubbo 3 only.
 *
 * <pre>
 * TriProvider --port P [--version V] [--group G] [--registry zookeeper://127.0.0.1:Z]
 *             (exits when standard input closes; with a registry it registers
 *              interface-level URLs only)
 * </pre>
 */
public final class TriProvider {
    private TriProvider() {
    }

    public static void main(String[] args) throws Exception {
        int port = -1;
        String version = null;
        String group = null;
        String registry = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--port":
                    port = Integer.parseInt(args[++i]);
                    break;
                case "--version":
                    version = args[++i];
                    break;
                case "--group":
                    group = args[++i];
                    break;
                case "--registry":
                    registry = args[++i];
                    break;
                default:
                    System.err.println("unknown argument: " + args[i]);
                    System.exit(2);
            }
        }
        if (port <= 0) {
            System.err.println("usage: TriProvider --port P [--version V] [--group G]");
            System.exit(2);
        }
        ApplicationConfig app = new ApplicationConfig("java-tri-provider");
        app.setQosEnable(false);
        RegistryConfig reg;
        if (registry == null) {
            reg = new RegistryConfig("N/A");
        } else {
            reg = new RegistryConfig(registry);
            reg.setUseAsConfigCenter(false);
            reg.setUseAsMetadataCenter(false);
            // (A property, not ApplicationConfig.setRegisterMode: these sources compile for 2.7 too.)
            System.setProperty("dubbo.application.register-mode", "interface");
        }
        ProtocolConfig protocol = new ProtocolConfig("tri", port);
        protocol.setHost("127.0.0.1");
        ServiceConfig<UserService> service = new ServiceConfig<>();
        service.setInterface(UserService.class);
        service.setRef(new JavaProvider.UserServiceImpl());
        if (version != null) {
            service.setVersion(version);
        }
        if (group != null) {
            service.setGroup(group);
        }
        try {
            DubboBootstrap.getInstance()
                    .application(app)
                    .registry(reg)
                    .protocol(protocol)
                    .service(service)
                    .start();
        } catch (Throwable t) {
            System.out.println("FAILED " + t);
            t.printStackTrace(System.out);
            System.out.flush();
            Runtime.getRuntime().halt(1);
        }
        System.out.println("READY " + port);
        System.out.flush();
        // The test keeps our stdin open; when it ends (or dies), stdin closes.
        while (System.in.read() >= 0) {
            // keep reading
        }
        Runtime.getRuntime().halt(0);
    }
}
